/** The save/sync status badge (`snb-status`): text is `Saved`, `Saving…` or `Offline`. */
import type { SyncStatus } from "../sync";
import { h } from "./dom";

const LABELS: Record<SyncStatus, { text: string; title: string }> = {
  saved: { text: "Saved", title: "Every change is saved in the lake" },
  saving: { text: "Saving…", title: "Changes are on their way to the kernel and the lake" },
  offline: { text: "Offline", title: "The kernel has not confirmed recent changes; they are kept here and sent when it answers" },
};

export class StatusBadge {
  readonly el: HTMLElement;
  private readonly label: HTMLElement;

  constructor(status: SyncStatus) {
    this.label = h("span", { class: "snb-status-label" });
    this.el = h("span", { class: "snb-status", testid: "snb-status", role: "status", "aria-live": "polite" },
      h("span", { class: "snb-status-dot", "aria-hidden": "true" }),
      this.label,
    );
    this.set(status);
  }

  set(status: SyncStatus): void {
    const { text, title } = LABELS[status];
    this.el.dataset["status"] = status;
    this.el.title = title;
    this.label.textContent = text;
  }
}
