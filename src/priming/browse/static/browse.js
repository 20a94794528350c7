// Keyboard shortcuts: "/" focuses the search box, arrow keys (or j/k) page through.
document.addEventListener("keydown", (ev) => {
  const t = ev.target;
  if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA")) return;
  if (ev.key === "/") {
    const q = document.getElementById("q");
    if (q) { ev.preventDefault(); q.focus(); q.select(); }
    return;
  }
  const rel = { ArrowRight: "next", j: "next", ArrowLeft: "prev", k: "prev" }[ev.key];
  if (!rel) return;
  const a = document.querySelector(`nav.pager a[rel="${rel}"]`);
  if (a) { ev.preventDefault(); window.location.href = a.href; }
});
