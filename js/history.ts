/**
 * Pure helpers of the history panel (no DOM, no Loro): relative times, the activity chart's
 * buckets, where tags sit in the session list, and which lines of a previewed cell changed.
 */
import type { TagInfo, VersionId, VersionInfo } from "./protocol";

/** "just now", "42 s ago", "3 min ago", "5 h ago", "2 days ago", then a date. Times in ms. */
export function relativeTime(thenMs: number, nowMs: number): string {
  const s = Math.round((nowMs - thenMs) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min ago`;
  const hours = Math.floor(min / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.floor(hours / 24);
  if (days < 30) return `${days} day${days === 1 ? "" : "s"} ago`;
  return new Date(thenMs).toISOString().slice(0, 10);
}

/** One bar of the activity chart: sessions that ended in [`from`, `to`) ms, and their edits. */
export interface Bucket {
  from: number;
  to: number;
  sessions: number;
  /** Characters added plus removed by those sessions (a session with none counts 1). */
  weight: number;
}

/**
 * Spread sessions over `count` equal time buckets between the oldest session's start and `nowMs`
 * (or the newest session's end, if later). Empty input gives no buckets.
 */
export function activityBuckets(versions: readonly VersionInfo[], count: number, nowMs: number): Bucket[] {
  if (versions.length === 0 || count < 1) return [];
  const ends = versions.map((v) => Date.parse(v.time));
  const starts = versions.map((v) => Date.parse(v.start));
  const from = Math.min(...starts, ...ends);
  const to = Math.max(nowMs, ...ends) + 1;
  const width = Math.max(1, (to - from) / count);
  const buckets: Bucket[] = Array.from({ length: count }, (_, i) => ({
    from: from + i * width,
    to: from + (i + 1) * width,
    sessions: 0,
    weight: 0,
  }));
  versions.forEach((v, i) => {
    const at = Math.min(count - 1, Math.max(0, Math.floor((ends[i]! - from) / width)));
    const bucket = buckets[at]!;
    bucket.sessions += 1;
    bucket.weight += Math.max(1, v.added + v.removed);
  });
  return buckets;
}

/** How two versions relate: -1 `a` is before `b`, 0 equal, 1 after, undefined concurrent. */
export type CompareVersions = (a: VersionId, b: VersionId) => -1 | 0 | 1 | undefined;

/**
 * Which session each tag belongs to: the session whose version equals the tag's, else the oldest
 * listed session at or after the tag's version (the session that contains it). Tags that fit no
 * listed session are left out. Returns version id -> tags (in the given order).
 */
export function placeTags(
  versions: readonly VersionInfo[],
  tags: readonly TagInfo[],
  compare?: CompareVersions,
): Map<VersionId, TagInfo[]> {
  const out = new Map<VersionId, TagInfo[]>();
  const add = (version: VersionId, tag: TagInfo) => {
    const list = out.get(version) ?? [];
    list.push(tag);
    out.set(version, list);
  };
  for (const tag of tags) {
    if (versions.some((v) => v.id === tag.version)) {
      add(tag.version, tag);
      continue;
    }
    if (!compare) continue;
    // versions are newest first: walk from the oldest up to the first that includes the tag.
    for (let i = versions.length - 1; i >= 0; i--) {
      const v = versions[i]!;
      let cmp: ReturnType<CompareVersions>;
      try {
        cmp = compare(v.id, tag.version);
      } catch {
        cmp = undefined;
      }
      if (cmp === 1 || cmp === 0) {
        add(v.id, tag);
        break;
      }
    }
  }
  return out;
}

/**
 * Lines (0-based) of the *old* text of a unified diff (`---`/`+++` headers, `@@ -a,n +b,m @@`
 * hunks) that are gone or different in the new text.
 */
export function changedOldLines(diff: string): Set<number> {
  const out = new Set<number>();
  let line = -1;
  for (const row of diff.split("\n")) {
    const hunk = /^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@/.exec(row);
    if (hunk) {
      const start = Number(hunk[1]);
      const length = hunk[2] === undefined ? 1 : Number(hunk[2]);
      line = length === 0 ? start : start - 1;
      continue;
    }
    if (line < 0 || row.startsWith("---") || row.startsWith("+++")) continue;
    if (row.startsWith("-")) out.add(line++);
    else if (row.startsWith(" ")) line++;
  }
  return out;
}

/** The lines of a unified diff without its `---` / `+++` file headers. */
export function diffBody(diff: string): string[] {
  return diff.split("\n").filter((row) => !row.startsWith("--- ") && !row.startsWith("+++ ") && row !== "---" && row !== "+++");
}

/** URL-safe base64 (unpadded) to bytes; throws on bad input. */
export function fromBase64Url(text: string): Uint8Array {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  const binary = atob(b64);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/**
 * A session summary for the list: without the "(+N -M chars)" the row shows apart, and with a
 * restored version's id replaced by that version's time when `timeOf` knows it.
 */
export function displaySummary(summary: string, timeOf: (version: string) => string | undefined): string {
  return summary
    .replace(/\s*\(\+\d+ -\d+ chars\)$/, "")
    .replace(/restored version ([A-Za-z0-9_-]+)/, (all, id: string) => {
      const time = timeOf(id);
      return time ? `restored the version of ${time}` : "restored an earlier version";
    });
}
