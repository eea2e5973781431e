// Small progressive enhancements; every page works without them.
document.addEventListener("change", (e) => {
  if (e.target.matches("[data-autosubmit]")) e.target.form.requestSubmit();
});
document.addEventListener("submit", (e) => {
  const msg = e.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) e.preventDefault();
});
document.addEventListener("click", (e) => {
  const copy = e.target.closest("[data-copy]");
  if (copy) {
    const el = document.querySelector(copy.getAttribute("data-copy"));
    navigator.clipboard?.writeText(el.textContent.trim()).then(() => {
      copy.textContent = "Copied";
      setTimeout(() => (copy.textContent = "Copy"), 1500);
    });
  }
  const field = e.target.closest("[data-filter-path]");
  if (field) {
    const form = document.querySelector("form.toolbar");
    form.querySelector("[name=filter_path]").value = field.getAttribute("data-filter-path");
    const value = form.querySelector("[name=filter_value]");
    value.scrollIntoView({ block: "center" });
    value.focus();
  }
  const toggle = e.target.closest("[data-toggle-nav]");
  if (toggle) {
    const open = document.body.classList.toggle("nav-open");
    toggle.setAttribute("aria-expanded", String(open));
  }
});

// A source form's field that matters only for some values of another (auth type,
// pagination) shows only while that one has them.
function applyShownWhen() {
  document.querySelectorAll("[data-shown-when]").forEach((field) => {
    const control = field.closest("form")?.querySelector(`[name="${field.dataset.shownWhen}"]`);
    if (control) field.hidden = !field.dataset.shownFor.split(" ").includes(control.value);
  });
}
document.addEventListener("DOMContentLoaded", applyShownWhen);
document.addEventListener("change", (e) => { if (e.target.matches("select")) applyShownWhen(); });
document.addEventListener("htmx:afterSwap", applyShownWhen);

// Progress bars take their width from data-width: the Content-Security-Policy allows no
// inline style attributes, and setting a style from a script is not one.
function applyWidths() {
  document.querySelectorAll("[data-width]").forEach((bar) => { bar.style.width = `${bar.dataset.width}%`; });
}
document.addEventListener("DOMContentLoaded", applyWidths);
document.addEventListener("htmx:afterSwap", applyWidths);

// live (issue 19): the overview's sparkline bars take their height from data-height, as
// progress bars take their width (no inline style attributes under the CSP).
function applyHeights() {
  document.querySelectorAll("[data-height]").forEach((bar) => { bar.style.height = `${bar.dataset.height}%`; });
}
document.addEventListener("DOMContentLoaded", applyHeights);
document.addEventListener("htmx:afterSwap", applyHeights);
