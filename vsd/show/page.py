"""The `vsd show` page: one self-contained HTML file (no server, no network, no external file).

Everything from the output is untrusted (object names, sentences, ids, error texts come from
files, manifests and a model), so every value goes through `_e` and only into element text or
quoted attributes, never into the script; the script only reads the DOM. A Content-Security-Policy
with a per-page nonce backs that up: even a value that slipped through could not run script or
load anything from the network.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Iterable

from vsd.runs import Night
from vsd.show.thumbs import Thumb

SCENE = -1  # pair_index of a scene-level row (no pair given, none detected)

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#f6f6f4}
header,nav,main{padding:8px 16px}
header h1{font-size:18px;margin:4px 0}
.meta{color:#555}
table.trend{border-collapse:collapse;margin:6px 0;font-variant-numeric:tabular-nums}
table.trend th,table.trend td{border-bottom:1px solid #ddd;padding:2px 8px;text-align:right}
table.trend th:first-child,table.trend td:first-child,table.trend td.l{text-align:left}
div.trend{display:flex;gap:16px;align-items:flex-start}
div.trend table{display:block;max-height:190px;overflow:auto}
.bar{display:inline-block;height:8px;background:#c33;vertical-align:middle;margin-left:4px}
.totals span{margin-right:14px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;z-index:2}
nav label{margin-right:12px}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:12px;align-items:start}
figure.row{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;display:flex;gap:10px}
figure.row.error{border-color:#c33}
[hidden]{display:none !important}
.thumb{position:relative;flex:0 0 auto;align-self:flex-start;line-height:0}
.thumb img{display:block;width:160px;height:auto}
.box{position:absolute;border:2px solid;box-sizing:border-box}
.box.subj{border-color:#e00}.box.obj{border-color:#0a0}
.missing{width:160px;min-height:120px;background:#eee;border:2px dashed #999;display:flex;align-items:center;
 justify-content:center;text-align:center;font-size:12px;line-height:1.3;color:#555;padding:4px;box-sizing:border-box;
 overflow-wrap:anywhere}
figcaption{flex:1;min-width:0;overflow-wrap:anywhere}
figcaption p{margin:2px 0}
.subj-name{color:#c00}.obj-name{color:#080}
.status{font-weight:bold;padding:0 4px;border-radius:3px}
.status.ok{background:#dfd}.status.error{background:#fdd}
.rel{font-weight:bold}
.no{color:#b00;font-weight:bold}
.label{color:#777;font-size:12px}
ol,ul{margin:0;padding-left:18px}
.flags li{font-size:12px;color:#835}
.err{color:#b00}
.ids{color:#888;font-size:11px}
"""

SCRIPT = """
(function () {
  var rows = Array.prototype.slice.call(document.querySelectorAll('figure.row'));
  var status = document.getElementById('f-status'), flag = document.getElementById('f-flag');
  var relation = document.getElementById('f-relation'), text = document.getElementById('f-text');
  var count = document.getElementById('f-count');
  function apply() {
    var s = status.value, f = flag.value, r = relation.value, q = text.value.trim().toLowerCase();
    var shown = 0;
    rows.forEach(function (row) {
      var ok = (!s || row.dataset.status === s) &&
        (!f || row.dataset.flags.split(' ').indexOf(f) >= 0) &&
        (!r || row.dataset.relation === r) &&
        (!q || row.textContent.toLowerCase().indexOf(q) >= 0);
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = shown + ' of ' + rows.length + ' shown';
  }
  // The filters live in the address (#status=error&flag=repaired), so a view can be linked to.
  var controls = {status: status, flag: flag, relation: relation, text: text};
  function save() {
    var parts = Object.keys(controls).filter(function (k) { return controls[k].value; })
      .map(function (k) { return k + '=' + encodeURIComponent(controls[k].value); });
    try { history.replaceState(null, '', parts.length ? '#' + parts.join('&') : ' '); } catch (e) { /* no history */ }
  }
  location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
    var i = kv.indexOf('='), el = i > 0 ? controls[kv.slice(0, i)] : null;
    if (el) { try { el.value = decodeURIComponent(kv.slice(i + 1)); } catch (e) { /* a mangled link */ } }
  });
  [status, flag, relation].forEach(function (el) { el.addEventListener('change', function () { apply(); save(); }); });
  text.addEventListener('input', function () { apply(); save(); });
  apply();
})();
"""


def _e(value: object) -> str:
    """Escaped text for element content or a double-quoted attribute; None is empty."""
    return "" if value is None else html.escape(str(value), quote=True)


def flag_kind(flag: str) -> str:
    """The filter's kind of a flag: ``repaired:task3.1 (missing)`` -> ``repaired``."""
    return re.split(r"[:( ]", flag.strip(), maxsplit=1)[0] or "flag"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _box(box: list[float] | None, cls: str, name: str | None) -> str:
    if not box or len(box) != 4 or any(v is None or v != v for v in box):  # null or NaN
        return ""
    x0, y0, x1, y1 = (min(max(float(v), 0.0), 1.0) for v in box)
    if x1 <= x0 or y1 <= y0:
        return ""
    style = (
        f"left:{x0 * 100:.2f}%;top:{y0 * 100:.2f}%;width:{(x1 - x0) * 100:.2f}%;height:{(y1 - y0) * 100:.2f}%"
    )
    return f'<div class="box {cls}" style="{style}" title="{_e(name)}"></div>'


def _thumb(row: dict, thumb: Thumb | None) -> str:
    if thumb is None or thumb.data_url is None:
        why = thumb.problem if thumb else "not read"
        return f'<div class="thumb missing" role="img" aria-label="image not shown">image not shown: {_e(why)}</div>'
    alt = f"{row.get('subject') or ''} / {row.get('object') or ''}"
    return (
        f'<div class="thumb"><img src="{thumb.data_url}" width="{thumb.width}" height="{thumb.height}" '
        f'alt="{_e(alt)}">{_box(row.get("subject_box"), "subj", row.get("subject"))}'
        f"{_box(row.get('object_box'), 'obj', row.get('object'))}</div>"
    )


def _sentences(label: str, one: str | None, many: list[str] | None) -> str:
    if one is None and not many:
        return ""
    out = f'<p><span class="label">{label}:</span> {_e(one)}</p>' if one is not None else ""
    if many:
        out += "<ol>" + "".join(f"<li>{_e(s)}</li>" for s in many) + "</ol>"
    return out


def _consistent(value: bool | None) -> str:
    return {True: "yes", False: '<span class="no">no</span>'}.get(value, "-")  # type: ignore[arg-type]


def _pair(row: dict) -> str:
    if row.get("pair_index") == SCENE:  # an image without pairs: described as a whole
        return '<span class="rel">scene</span>'
    return (
        f'<span class="subj-name">{_e(row.get("subject"))}</span> '
        f'<span class="rel">{_e(row.get("relation") or "?")}</span> '
        f'<span class="obj-name">{_e(row.get("object"))}</span>'
    )


def figure(row: dict, thumb: Thumb | None) -> str:
    """One row: thumbnail with boxes, relation and its geometry check, raw and published text."""
    flags = list(row.get("flags") or [])
    kinds = sorted({flag_kind(f) for f in flags})
    status = row.get("status") or "unknown"
    parts = [
        f'<figure class="row {_e(status)}" data-status="{_e(status)}" data-flags="{_e(" ".join(kinds))}" '
        f'data-relation="{_e(row.get("relation") or "")}">',
        _thumb(row, thumb),
        "<figcaption>",
        f'<p><span class="status {_e(status)}">{_e(status)}</span> {_pair(row)}</p>',
    ]
    if status == "ok" and row.get("pair_index") != SCENE:
        parts.append(
            f'<p class="geo"><span class="label">geometry:</span> {_e(row.get("geometry_relation") or "undecided")}'
            f' <span class="label">consistent:</span> {_consistent(row.get("consistent"))}</p>'
        )
    parts.append(_sentences("raw", row.get("description"), row.get("descriptions")))
    published = _sentences("published", row.get("refined_description"), row.get("refined_descriptions"))
    if published or row.get("refine_status"):
        parts.append(published + f'<p><span class="label">refine:</span> {_e(row.get("refine_status"))}</p>')
    if flags:
        parts.append('<ul class="flags">' + "".join(f"<li>{_e(f)}</li>" for f in flags) + "</ul>")
    if row.get("error"):
        parts.append(f'<p class="err"><span class="label">error:</span> {_e(row["error"])}</p>')
    parts.append(
        f'<p class="ids">{_e(row.get("source_uri"))}<br>image {_e(str(row.get("image_id") or "")[:16])} '
        f"· pair {_e(row.get('pair_index'))} · run {_e(row.get('run_id'))}</p>"
    )
    parts += ["</figcaption>", "</figure>"]
    return "\n".join(parts)


def _options(element_id: str, label: str, values: Iterable[str]) -> str:
    opts = "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in sorted(set(values)) if v)
    return f'<label>{label} <select id="{element_id}"><option value="">all</option>{opts}</select></label>'


def _totals(night: Night | None) -> str:
    if night is None:
        return '<p class="totals">no run records in this output</p>'
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(night.errors_by_reason.items())) or "none"
    flags = ", ".join(f"{k} {v}" for k, v in sorted(night.flags.items(), key=lambda kv: -kv[1])) or "none"
    return (
        f'<p class="totals"><b>latest run {_e(night.run_date)}</b> ({_e(night.run_id)}): '
        f"<span>images {night.images}</span><span>rows {night.rows}</span><span>ok {night.ok}</span>"
        f"<span>errors {night.errors} ({_e(reasons)})</span><span>repaired {night.repaired}</span>"
        f"<span>deferred {night.deferred}</span><span>images/s {_fmt(night.images_per_s, 2)}</span>"
        f"<span>model {_e(night.model)}</span></p>"
        f'<p class="totals">flags (rows per kind): {_e(flags)}</p>'
    )


def _trend(nights: list[Night]) -> str:
    if not nights:
        return ""
    head = (
        "<tr><th>run date</th><th>run</th><th>images</th><th>ok</th><th>error share</th>"
        "<th>repaired share</th><th>deferred</th><th>images/s</th><th>model</th></tr>"
    )
    body = "".join(
        f'<tr><td>{_e(n.run_date)}</td><td class="l">{_e(n.run_id)}</td><td>{n.images}</td><td>{n.ok}</td>'
        f'<td>{_fmt(n.error_share)}<span class="bar" style="width:{min(n.error_share, 1.0) * 60:.1f}px"></span></td>'
        f"<td>{_fmt(n.repaired_share)}</td><td>{n.deferred}</td><td>{_fmt(n.images_per_s, 2)}</td>"
        f'<td class="l">{_e(n.model)}</td></tr>'
        for n in reversed(nights)  # newest first: last night is what one opens the page for
    )
    spark = f'<div>{_sparkline(nights)}<br><span class="label">error (red), repaired (amber) share per run</span></div>'
    return f'<div class="trend">{spark}<table class="trend">{head}{body}</table></div>'


def _sparkline(nights: list[Night], width: int = 240, height: int = 48) -> str:
    """Error share (red) and repaired share (amber) per run, oldest to newest: numbers only."""
    step = width / max(len(nights) - 1, 1)

    def points(values: list[float]) -> str:
        return " ".join(
            f"{i * step:.1f},{height - 4 - min(v, 1.0) * (height - 8):.1f}" for i, v in enumerate(values)
        )

    lines = ""
    for color, values in (
        ("#c33", [n.error_share for n in nights]),
        ("#d90", [n.repaired_share for n in nights]),
    ):
        if len(values) == 1:
            x, y = points(values).split(",")
            lines += f'<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>'
        else:
            lines += f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points(values)}"/>'
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="-4 0 {width + 8} {height}" role="img" '
        f'aria-label="error share (red) and repaired share (amber) per run, 0 to 1, oldest to newest">'
        f'<rect x="-4" y="0" width="{width + 8}" height="{height}" fill="#fff" stroke="#ddd"/>{lines}</svg>'
    )


def render(
    rows: list[dict],
    thumbs: dict[str | None, Thumb],
    nights: list[Night],
    *,
    source: str,
    summary: str,
    generated_at: str,
) -> str:
    """The whole page. ``summary`` says which rows these are (filters, limit, of how many)."""
    nonce = secrets.token_urlsafe(16)
    csp = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'"
    kinds = {flag_kind(f) for r in rows for f in (r.get("flags") or [])}
    controls = " ".join(
        [
            _options("f-status", "status", (r.get("status") or "" for r in rows)),
            _options("f-flag", "flag", kinds),
            _options("f-relation", "relation", (r.get("relation") or "" for r in rows)),
            '<label>text <input id="f-text" type="search" placeholder="name, sentence, id, error"></label>',
            '<span id="f-count"></span>',
        ]
    )
    figures = "\n".join(figure(r, thumbs.get(r.get("source_uri"))) for r in rows)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vsd show: {_e(source)}</title>
<style>{CSS}</style></head>
<body>
<header><h1>vsd show: {_e(source)}</h1>
<p class="meta">{_e(summary)} · generated {_e(generated_at)} · subject box red, object box green</p>
{_totals(nights[-1] if nights else None)}
{_trend(nights)}
</header>
<nav>{controls}</nav>
<main id="rows">
{figures}
</main>
<script nonce="{nonce}">{SCRIPT}</script>
</body></html>
"""
