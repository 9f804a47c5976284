/**
 * The save/sync status badge (`snb-status`): text is `Saved`, `Saving…` or `Offline` (with the
 * reason when the kernel cannot write the lake: "Offline — lake unreachable, N changes kept on the
 * kernel's disk").
 */
import type { LakeOutage, SyncStatus } from "../sync";
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

  /** Show `status`; `outage` (the lake is unreachable) explains an `offline` one. */
  set(status: SyncStatus, outage: LakeOutage | null = null): void {
    const { text, title } = statusLabel(status, outage);
    this.el.dataset["status"] = status;
    this.el.dataset["lake"] = outage !== null && status === "offline" ? "unreachable" : "ok";
    this.el.title = title;
    this.label.textContent = text;
  }
}

/** The badge's text and tooltip for `status`; `outage` explains an `offline` status. */
export function statusLabel(status: SyncStatus, outage: LakeOutage | null): { text: string; title: string } {
  if (status !== "offline" || outage === null) return LABELS[status];
  const kept = `${outage.kept} ${outage.kept === 1 ? "change" : "changes"} kept on the kernel's disk`;
  const unkept = outage.unkept > 0 ? `, ${outage.unkept} only in its memory` : "";
  return {
    text: `Offline — lake unreachable, ${kept}${unkept}`,
    title:
      "The kernel cannot write to the lake. Editing goes on: unsaved changes are kept in the kernel's local spill file and written to the lake when it is back" +
      (outage.unkept > 0 ? " (some could not be written to the spill file: keep this kernel running)" : ""),
  };
}
