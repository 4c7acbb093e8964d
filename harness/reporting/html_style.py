"""The report's stylesheet, inlined into report.html (no external fonts or files: it must open offline)."""

CSS = """
:root { --fail: #b3261e; --fail-bg: #fdecea; --pass: #1b7a4b; --pass-bg: #e6f4ec; --unknown: #8a6d00;
  --unknown-bg: #fff6d6; --ink: #1d2329; --muted: #5b6670; --line: #d8dee4; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: var(--ink); background: var(--bg); }
header, nav, main, footer { max-width: 1320px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 20px; }
h1 { font-size: 1.6rem; margin: 0 0 12px; }
h2 { font-size: 1.25rem; margin: 0 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.05rem; margin: 18px 0 8px; }
h4 { font-size: .98rem; margin: 0 0 6px; }
h5 { font-size: .8rem; margin: 0 0 2px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px; margin: 16px 0; }
nav { display: flex; gap: 18px; padding-top: 4px; padding-bottom: 4px; }
nav a, a { color: #0b5cad; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .86em; }
pre { background: var(--bg); border: 1px solid var(--line); border-radius: 4px; padding: 8px; margin: 0;
  overflow-x: auto; white-space: pre-wrap; word-break: break-word; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 8px; margin: 0 0 10px; }
.facts div { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; }
.facts dt { font-size: .75rem; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
.facts dd { margin: 2px 0 0; font-weight: 600; word-break: break-word; }
.repro { color: var(--muted); font-size: .9rem; }
.hint, .muted, caption { color: var(--muted); font-size: .88rem; }
caption { text-align: left; padding: 0 0 6px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 7px 9px; border-bottom: 1px solid var(--line); }
thead th { background: var(--bg); font-size: .82rem; text-transform: uppercase; letter-spacing: .03em;
  color: var(--muted); }
tbody th { font-weight: 600; white-space: nowrap; }
.num { text-align: right; white-space: nowrap; }
.badge { display: inline-block; min-width: 70px; text-align: center; padding: 2px 8px; border-radius: 999px;
  font-size: .78rem; font-weight: 700; letter-spacing: .04em; }
.v-pass { color: var(--pass); background: var(--pass-bg); border: 1px solid var(--pass); }
.v-fail { color: #fff; background: var(--fail); border: 1px solid var(--fail); }
.v-unknown { color: var(--unknown); background: var(--unknown-bg); border: 1px solid var(--unknown); }
tr.r-fail > th { border-left: 4px solid var(--fail); }
tr.r-unknown > th { border-left: 4px solid var(--unknown); }
tr.r-pass > th { border-left: 4px solid var(--pass); }
.tag { display: inline-block; padding: 1px 7px; border-radius: 4px; font-size: .74rem; font-weight: 700; }
.t-approved { color: var(--pass); background: var(--pass-bg); }
.t-unapproved { color: #fff; background: var(--fail); }
.t-partly-unapproved { color: var(--unknown); background: var(--unknown-bg); border: 1px solid var(--unknown); }
tr.row-unapproved { background: var(--fail-bg); }
tr.row-unapproved > th { border-left: 5px solid var(--fail); }
tr.row-partly { background: var(--unknown-bg); }
tr.row-partly > th { border-left: 5px solid var(--unknown); }
tr.row-approved > th { border-left: 5px solid var(--pass); }
.transitions td, .transitions th { font-size: .88rem; }
.transitions tbody th { white-space: normal; min-width: 140px; }
.transitions td:last-child { min-width: 170px; }
.transitions td.affected { min-width: 150px; }
.t-vendor { color: #fff; background: #6a3d9a; }
tr.row-vendor > th { border-left-style: double; }
.transitions td.capability { min-width: 170px; }
.breach { color: var(--fail); font-weight: 600; }
td.breach-cell { background: #f9d6d2; }
.changed { color: var(--unknown); }
.ok { color: var(--pass); font-weight: 600; }
ul.plain { list-style: none; margin: 0; padding: 0; }
ul.plain li + li { margin-top: 3px; }
.scroll { overflow-x: auto; }
.violation { border: 1px solid var(--line); border-left: 4px solid var(--fail); border-radius: 6px;
  padding: 10px 12px; margin: 0 0 12px; }
.ids code { background: var(--bg); padding: 0 3px; border-radius: 3px; }
ul.diff { list-style: none; margin: 0 0 6px; padding: 6px 8px; background: var(--bg); border: 1px solid var(--line);
  border-radius: 4px; }
ul.diff li { white-space: pre-wrap; word-break: break-word; }
ul.diff code { font-size: .86em; }
.d-mark { display: inline-block; width: 1.1em; font-weight: 700; font-family: ui-monospace, monospace; }
.d-add { color: var(--pass); }
.d-del { color: var(--fail); }
.d-chg { color: var(--unknown); }
details summary { cursor: pointer; color: var(--muted); font-size: .82rem; }
.evidence { display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); gap: 10px; }
figure { margin: 6px 0 10px; }
figcaption { color: var(--muted); font-size: .86rem; }
svg { width: 100%; height: auto; display: block; font-family: inherit; }
.lane { fill: #fbfcfd; stroke: var(--line); }
.lane-alt { fill: #f1f4f7; }
.lane-name { font-size: 13px; font-weight: 600; fill: var(--ink); }
.lane-sub { font-size: 10.5px; fill: var(--muted); }
.fault { fill: #D55E00; fill-opacity: .09; stroke: #D55E00; stroke-opacity: .5; stroke-dasharray: 4 3; }
.fault-target { fill: #D55E00; fill-opacity: .16; }
.fault-label { font-size: 12px; font-weight: 600; fill: #a34800; }
.switch { fill: url(#hatch); fill-opacity: .55; stroke: #4a6285; stroke-dasharray: 2 3; }
.switch-label { font-size: 12px; font-weight: 600; fill: #2f4466; }
.axis { stroke: #8895a1; }
.grid { stroke: #e3e8ed; }
.tick, .axis-label, .legend { font-size: 11.5px; fill: var(--muted); }
.legend { fill: var(--ink); }
.rate-line { fill: none; stroke: #0072B2; stroke-width: 2.2; }
.rate-dot { fill: #0072B2; stroke: #fff; stroke-width: 1; }
ul.legend { list-style: none; display: flex; flex-wrap: wrap; gap: 16px; padding: 0; margin: 6px 0 0; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 3px; margin-right: 6px;
  vertical-align: -1px; }
.fault-swatch { background: #f6d5bf; border: 1px dashed #D55E00; }
.switch-swatch { background: repeating-linear-gradient(45deg, #dbe4f0 0 3px, #7f93b0 3px 5px); }
.meanings { display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); gap: 8px 16px; }
.meanings dt { font-weight: 700; }
.meanings dd { margin: 0; color: var(--muted); font-size: .9rem; }
footer { color: var(--muted); font-size: .82rem; padding-bottom: 24px; }
"""
