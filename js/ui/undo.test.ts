import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { undoKeyAction } from "./undo";

const key = (k: string, mods: { ctrl?: boolean; meta?: boolean; shift?: boolean; alt?: boolean } = {}) => ({
  key: k,
  ctrlKey: mods.ctrl ?? false,
  metaKey: mods.meta ?? false,
  shiftKey: mods.shift ?? false,
  altKey: mods.alt ?? false,
});

describe("undo keys outside the editors", () => {
  it("maps Ctrl/Cmd-Z to undo, Ctrl/Cmd-Shift-Z and Ctrl-Y to redo, and nothing else", () => {
    assert.equal(undoKeyAction(key("z", { ctrl: true })), "undo");
    assert.equal(undoKeyAction(key("z", { meta: true })), "undo");
    assert.equal(undoKeyAction(key("Z", { ctrl: true, shift: true })), "redo");
    assert.equal(undoKeyAction(key("Z", { meta: true, shift: true })), "redo");
    assert.equal(undoKeyAction(key("y", { ctrl: true })), "redo");
    assert.equal(undoKeyAction(key("z")), null);
    assert.equal(undoKeyAction(key("z", { ctrl: true, alt: true })), null);
    assert.equal(undoKeyAction(key("y", { meta: true })), null, "Cmd-Y is the browser's history on macOS");
    assert.equal(undoKeyAction(key("Enter", { ctrl: true })), null);
  });
});
