/**
 * The status page's stylesheet, served as a file (the Content-Security-Policy allows no inline
 * style). State colours pass WCAG AA on white for text; every state also has a symbol and a word.
 */
export const STYLE = `
:root{--ok:#1a7f37;--degraded:#9a6700;--blocked:#cf222e;--unknown:#57606a;--line:#d0d7de}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
header{padding:1rem 1.5rem .5rem}main{padding:0 1.5rem 2rem;max-width:1200px}
h1{font-size:1.35rem;margin:0}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}h3{font-size:1rem;margin:1rem 0 .4rem}
.meta{color:#57606a;margin:.2rem 0 0;font-size:.9rem}a{color:#0969da}
.banner{border:2px solid;border-radius:6px;padding:.7rem 1rem;margin:.6rem 0;background:#fff}
.banner strong{display:block;font-size:1.05rem}
.banner-network-down{border-color:var(--unknown);background:#eaeef2}.banner-allowlist{border-color:var(--degraded);background:#fff8c5}
.answers{list-style:none;margin:0;padding:0;display:grid;gap:.5rem}
.answer{background:#fff;border:1px solid var(--line);border-left:6px solid var(--unknown);border-radius:6px;padding:.6rem .9rem}
.answer.s-ok{border-left-color:var(--ok)}.answer.s-degraded{border-left-color:var(--degraded)}.answer.s-blocked{border-left-color:var(--blocked)}
.answer .title{font-weight:600;font-size:1.05rem;margin:0 .4rem}.answer .why{display:block;margin-top:.2rem}.answer .since{color:#424a53}
.badge{display:inline-block;border-radius:1rem;padding:0 .55rem;font-weight:600;font-size:.85rem;color:#fff;background:var(--unknown);white-space:nowrap}
.badge.s-ok{background:var(--ok)}.badge.s-degraded{background:var(--degraded)}.badge.s-blocked{background:var(--blocked)}.badge.s-untested{background:#fff;color:#57606a;border:1px solid var(--line)}
.timelines{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:.8rem}
figure.timeline{margin:0;background:#fff;border:1px solid var(--line);border-radius:6px;padding:.5rem .7rem}
figcaption{font-weight:600;margin-bottom:.2rem}.chart{min-height:90px;width:100%}
table{border-collapse:collapse;background:#fff;width:100%}th,td{border:1px solid var(--line);padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
details{margin:.3rem 0}summary{cursor:pointer;color:#0969da}
pre{white-space:pre-wrap;word-break:break-all;font-size:12px;background:#f6f8fa;padding:.4rem;margin:.3rem 0;max-height:24rem;overflow:auto}
code{font-size:.85em}.legend dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem .8rem;margin:0}.legend dd{margin:0}
.muted{color:#57606a}
.u-legend{font-size:.8rem;color:#424a53}.u-legend th{background:none;border:0;font-weight:600}.u-legend td{border:0}.u-legend .u-marker{display:none}
`;
