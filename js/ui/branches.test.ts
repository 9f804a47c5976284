import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BRANCH_NAME, branchNameProblem, suggestBranchName } from "./branches";

describe("branch names", () => {
  it("suggests a free name: what-if from main, name-N from a branch", () => {
    assert.equal(suggestBranchName("main", ["main"]), "what-if");
    assert.equal(suggestBranchName("main", ["main", "what-if", "what-if-2"]), "what-if-3");
    assert.equal(suggestBranchName("pricing", ["main", "pricing"]), "pricing-2");
  });

  it("follows the kernel's rule and refuses taken names", () => {
    for (const ok of ["what-if", "v1.2", "a_b", "x".repeat(128)]) assert.ok(BRANCH_NAME.test(ok), ok);
    for (const bad of ["", "..", "a/b", "../x", "quote'd", "x".repeat(129), "sp ace"]) {
      assert.notEqual(branchNameProblem(bad, []), "", bad);
    }
    assert.match(branchNameProblem("main", ["main"]), /already a branch named main/);
    assert.equal(branchNameProblem("fresh", ["main"]), "");
  });
});
