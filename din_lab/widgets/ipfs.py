"""The IPFS browser: every CID the task recorded (on chain or announced), what it holds, its size,
and a check that the content the store returns hashes to that CID again."""

from __future__ import annotations

import html

import ipywidgets as w

from din_lab.cid import Cid
from din_lab.errors import DinLabError
from din_lab.protocol.lab import Lab, StepReport
from din_lab.widgets._render import html_table

# what an object is, from the action that produced it (the Lab's event names)
KINDS = (("encrypted test set", "encrypted test set"), ("evaluation set", "test set"),
         ("encrypted outputs", "encrypted outputs"), ("outputs digest", "encrypted outputs"),
         ("decrypted scores", "owner's audit record"), ("global model", "model"), ("create task", "genesis model"),
         ("masked update", "masked update"), ("uploaded update", "update"), ("submit update", "update"),
         ("advertised round keys", "secure-aggregation aux object"), ("shares", "share reveal"),
         ("revealed its round", "sealed update reveal"), ("result", "subgroup result"))
COLUMNS = ("cid", "holds", "recorded by", "phase", "round", "size", "verified")


def kind_of(action: str) -> str:
    low = action.lower()
    return next((kind for key, kind in KINDS if key in low), action)


class IpfsBrowser(w.VBox):
    """``objects``: one row per distinct CID in the Lab's events; :meth:`verify` re-hashes one."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.objects: list[dict] = []
        self._verified: dict[str, bool] = {}
        self._sizes: dict[str, int | None] = {}  # content never changes under its CID: read once
        self.title = w.HTML()
        self.table = w.HTML(layout=w.Layout(max_height="320px", overflow="auto"))
        self.pick = w.Dropdown(description="CID", layout=w.Layout(width="640px"))
        self.detail = w.HTML()
        self.pick.observe(lambda change: self._show(change["new"]), names="value")
        super().__init__([self.title, self.table, self.pick, self.detail])
        self.refresh()

    def update(self, report: StepReport) -> None:
        self.refresh()

    def verify(self, cid: str) -> bool:
        """True when the store's bytes for ``cid`` hash, with the same import layout, to ``cid``."""
        if cid not in self._verified:
            parsed = Cid.parse(cid)
            try:
                data = self.lab.store.cat(parsed)
                again = self.lab.store.add(data, cid_version=parsed.version, only_hash=True)
                self._verified[cid] = Cid.coerce(again) == parsed
            except DinLabError:
                self._verified[cid] = False
        return self._verified[cid]

    def _size(self, cid: str) -> int | None:
        if cid not in self._sizes:
            try:
                self._sizes[cid] = self.lab.store.stat(cid).size
            except DinLabError:
                self._sizes[cid] = None
        return self._sizes[cid]

    def refresh(self) -> None:
        seen: dict[str, dict] = {}
        for e in self.lab.events:
            if e.cid and e.cid not in seen:
                seen[e.cid] = {"cid": e.cid, "holds": kind_of(e.action), "recorded by": e.actor, "phase": e.phase,
                               "round": e.round}
        rows = list(seen.values())
        for row in rows:  # each CID is stat-ed and re-hashed once (cached)
            row["size"] = self._size(row["cid"])
            row["verified"] = "yes" if self.verify(row["cid"]) else "NO"
        self.objects = rows
        bad = sum(1 for r in rows if r.get("verified") == "NO")
        self.title.value = (f"<b>IPFS: {len(rows)} objects</b> &mdash; "
                            + ("every one hashes to its CID" if not bad else f"<b style='color:#cf222e'>{bad} do "
                               "not hash to their CID</b>"))
        self.table.value = html_table(list(reversed(rows)), COLUMNS, empty="nothing stored yet")
        options = [(f"{r['holds']}: {r['cid']}", r["cid"]) for r in reversed(rows)]
        chosen = self.pick.value
        self.pick.options = options  # resets the choice: keep the reader's if its CID is still listed
        if options:
            self.pick.value = chosen if chosen in {c for _, c in options} else options[0][1]
        self._show(self.pick.value)

    def _show(self, cid: str | None) -> None:
        if not cid:
            self.detail.value = ""
            return
        row = next((r for r in self.objects if r["cid"] == cid), None)
        if row is None:
            return
        try:
            head = self.lab.store.cat(Cid.parse(cid))[:64].hex()
        except DinLabError as e:
            head = f"unreadable: {e}"
        self.detail.value = (f"<code>{html.escape(cid)}</code>: {html.escape(str(row['holds']))}, "
                             f"{row.get('size') or 0:,} bytes, recorded by {html.escape(str(row['recorded by']))} in "
                             f"{html.escape(str(row['phase']))}; re-hashes to its CID: "
                             f"<b>{'yes' if self.verify(cid) else 'NO'}</b><br>first bytes: "
                             f"<code>{html.escape(head)}</code>")
