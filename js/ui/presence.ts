/**
 * The toolbar's "who is here" (`snb-presence`): one `snb-presence-peer` per connected view, this
 * view first and marked "you", each its initials in a circle of its colour, the name in `title`.
 * Clicking your own entry renames you (when the name is not fixed by the `author` trait).
 */
import { initials, type Peer, type Presence } from "../presence";
import { h } from "./dom";

/** localStorage key of this browser's chosen display name. */
export const NAME_KEY = "sqlrooms_nb.name";

/** This browser's display name: the stored one, else a new "Guest NNN" (stored). */
export function browserName(storage: Pick<Storage, "getItem" | "setItem"> | null): string {
  try {
    const stored = storage?.getItem(NAME_KEY)?.trim();
    if (stored) return stored.slice(0, 64);
  } catch {
    // storage may be blocked (privacy settings, sandboxed frames)
  }
  const name = `Guest ${100 + Math.floor(Math.random() * 900)}`;
  try {
    storage?.setItem(NAME_KEY, name);
  } catch {
    // keep the name for this page only
  }
  return name;
}

function safeStorage(): Storage | null {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}

export interface PresenceBarOptions {
  presence: Presence;
  signal: AbortSignal;
  /** The name comes from the `author` trait and cannot be changed here. */
  fixedName: boolean;
}

export class PresenceBar {
  readonly el: HTMLElement;
  private readonly unsubscribe: () => void;
  private scheduled = false;
  private last = "";

  constructor(private readonly options: PresenceBarOptions) {
    this.el = h("div", { class: "snb-presence", testid: "snb-presence", role: "list", "aria-label": "Who is here" });
    this.el.addEventListener(
      "click",
      (e) => {
        const target = (e.target as Element | null)?.closest("[data-self]");
        if (target) this.rename();
      },
      { signal: options.signal },
    );
    this.unsubscribe = options.presence.onChange(() => this.schedule());
    this.render();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      if (!this.options.signal.aborted) this.render();
    });
  }

  render(): void {
    const peers = this.options.presence.peers();
    const key = JSON.stringify(peers.map((p) => [p.view, p.name, p.color, p.self, p.branch]));
    if (key === this.last) return; // cursor moves do not touch the avatars
    this.last = key;
    this.el.replaceChildren(...peers.map((p) => this.avatar(p)));
  }

  private avatar(peer: Peer): HTMLElement {
    const you = peer.self;
    const where = peer.branch && peer.branch !== this.options.presence.branch ? ` · on branch ${peer.branch}` : "";
    const title = you ? `${peer.name} (you)${this.options.fixedName ? "" : " · click to rename"}` : `${peer.name}${where}`;
    const el = h("span", {
      class: `snb-presence-peer${you ? " snb-presence-self" : ""}`,
      testid: "snb-presence-peer",
      role: "listitem",
      title,
      "aria-label": title,
      "data-view": peer.view,
      "data-name": peer.name,
      "data-branch": peer.branch,
      "data-self": you ? "true" : undefined,
      tabindex: you && !this.options.fixedName ? 0 : undefined,
    }, initials(peer.name));
    el.style.backgroundColor = peer.color;
    if (you && !this.options.fixedName) {
      el.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          this.rename();
        }
      });
    }
    return el;
  }

  private rename(): void {
    if (this.options.fixedName) return;
    const current = this.options.presence.name;
    const next = globalThis.prompt?.("Your name, as others see it:", current)?.trim();
    if (!next || next === current) return;
    try {
      safeStorage()?.setItem(NAME_KEY, next.slice(0, 64));
    } catch {
      // the name still applies to this page
    }
    this.options.presence.setName(next);
  }

  destroy(): void {
    this.unsubscribe();
  }
}

/** The display name for this view: the `author` trait if set, else this browser's name. */
export function displayName(author: string): { name: string; fixed: boolean } {
  const trimmed = author.trim();
  if (trimmed) return { name: trimmed.slice(0, 64), fixed: true };
  return { name: browserName(safeStorage()), fixed: false };
}
