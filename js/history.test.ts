import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { activityBuckets, changedOldLines, diffBody, displaySummary, fromBase64Url, placeTags, relativeTime } from "./history";
import type { TagInfo, VersionId, VersionInfo } from "./protocol";

const T0 = Date.parse("2024-05-01T10:00:00Z");
const session = (id: string, startMs: number, endMs: number, added = 1, removed = 0): VersionInfo => ({
  id: id as VersionId,
  time: new Date(endMs).toISOString(),
  start: new Date(startMs).toISOString(),
  author: "ana",
  summary: "",
  cells: [],
  added,
  removed,
  changes: 1,
});

describe("history helpers", () => {
  it("says how long ago in words people use", () => {
    assert.equal(relativeTime(T0, T0 + 2_000), "just now");
    assert.equal(relativeTime(T0, T0 + 42_000), "42 s ago");
    assert.equal(relativeTime(T0, T0 + 3 * 60_000 + 10_000), "3 min ago");
    assert.equal(relativeTime(T0, T0 + 5 * 3_600_000), "5 h ago");
    assert.equal(relativeTime(T0, T0 + 24 * 3_600_000), "1 day ago");
    assert.equal(relativeTime(T0, T0 + 3 * 24 * 3_600_000), "3 days ago");
    assert.equal(relativeTime(T0, T0 + 90 * 24 * 3_600_000), "2024-05-01");
  });

  it("buckets sessions by their end time, from the oldest start to now", () => {
    const versions = [session("c", T0 + 95_000, T0 + 99_000, 10, 5), session("b", T0 + 40_000, T0 + 50_000), session("a", T0, T0 + 1_000)];
    const buckets = activityBuckets(versions, 10, T0 + 100_000);
    assert.equal(buckets.length, 10);
    assert.equal(buckets[0]!.from, T0);
    assert.deepEqual(
      buckets.map((b) => b.sessions),
      [1, 0, 0, 0, 1, 0, 0, 0, 0, 1],
    );
    assert.equal(buckets[9]!.weight, 15);
    assert.equal(buckets.reduce((n, b) => n + b.sessions, 0), 3);
    assert.deepEqual(activityBuckets([], 10, T0), []);
  });

  it("puts a tag on its own session, else on the oldest session that contains it", () => {
    const versions = [session("v3", T0, T0), session("v2", T0, T0), session("v1", T0, T0)];
    const tags: TagInfo[] = [
      { name: "exact", version: "v2" as VersionId },
      { name: "inside", version: "v1.5" as VersionId },
      { name: "unknown", version: "zz" as VersionId },
    ];
    const order = ["v1", "v1.5", "v2", "v3"];
    const compare = (a: VersionId, b: VersionId) => {
      if (a === "zz" || b === "zz") return undefined;
      return Math.sign(order.indexOf(a) - order.indexOf(b)) as -1 | 0 | 1;
    };
    const placed = placeTags(versions, tags, compare);
    assert.deepEqual(placed.get("v2" as VersionId)?.map((t) => t.name), ["exact", "inside"]);
    assert.equal(placed.get("v1" as VersionId), undefined);
    assert.equal([...placed.values()].flat().length, 2);
    assert.deepEqual([...placeTags(versions, tags).keys()], ["v2"], "without a comparator only exact matches");
  });

  it("finds the old text's lines a unified diff changes or removes", () => {
    const diff = ["--- before", "+++ after", "@@ -1,4 +1,4 @@", " select a,", "-  b", "+  c", " from t", "-where x", "+where y"].join("\n");
    assert.deepEqual([...changedOldLines(diff)], [1, 3]);
    assert.deepEqual([...changedOldLines("--- before\n+++ after\n@@ -0,0 +1,2 @@\n+a\n+b")], []);
    assert.deepEqual([...changedOldLines("--- before\n+++ after\n@@ -1,2 +0,0 @@\n-a\n-b")], [0, 1]);
    assert.deepEqual(diffBody(diff).slice(0, 2), ["@@ -1,4 +1,4 @@", " select a,"]);
  });

  it("shortens summaries for the list", () => {
    assert.equal(displaySummary("ana edited 2 cells (+58 -0 chars)", () => undefined), "ana edited 2 cells");
    assert.equal(displaySummary("ana restored version AdC8-u2e_ZS", (v) => (v === "AdC8-u2e_ZS" ? "10:02" : undefined)), "ana restored the version of 10:02");
    assert.equal(displaySummary("ana restored version Zz", () => undefined), "ana restored an earlier version");
  });

  it("decodes URL-safe base64 without padding", () => {
    assert.deepEqual([...fromBase64Url("AQL-_w")], [1, 2, 0xfe, 0xff]);
  });
});
