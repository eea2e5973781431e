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

// browse: every code block gets a Copy button (what it copies is the block's text, as shown).
function addCopyButtons() {
  document.querySelectorAll("pre.code:not([data-copyable])").forEach((pre) => {
    pre.dataset.copyable = "";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "btn btn-sm copy-code";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy this code");
    const frame = document.createElement("div");
    frame.className = "code-frame";
    pre.replaceWith(frame);
    frame.append(pre, button);
  });
}
document.addEventListener("DOMContentLoaded", addCopyButtons);
document.addEventListener("htmx:afterSwap", addCopyButtons);
document.addEventListener("click", (e) => {
  const button = e.target.closest(".copy-code");
  if (!button) return;
  const text = button.parentElement.querySelector("pre").textContent;
  const done = (word) => { button.textContent = word; setTimeout(() => (button.textContent = "Copy"), 1500); };
  if (navigator.clipboard) navigator.clipboard.writeText(text).then(() => done("Copied"), () => done("Select and copy"));
  else done("Select and copy");
});

// browse: the API reference page renders /v1/openapi.json with the vendored Swagger UI.
// "Try it out" runs with the signed-in session, so it sends the CSRF header the API
// expects of a session; nothing is fetched from outside (no validator badge).
document.addEventListener("DOMContentLoaded", () => {
  const node = document.getElementById("api-reference");
  if (!node || !window.SwaggerUIBundle) return;
  const csrf = document.querySelector("meta[name=csrf-token]")?.content;
  window.SwaggerUIBundle({
    url: node.dataset.specUrl,
    domNode: node,
    deepLinking: true,
    layout: "BaseLayout",
    presets: [window.SwaggerUIBundle.presets.apis],
    validatorUrl: null,
    defaultModelsExpandDepth: 0,
    // browse2: a request authorized with an API key (Authorize) needs no CSRF header, so the
    // curl shown for it runs from a shell as it is.
    requestInterceptor: (req) => {
      const keyed = Object.keys(req.headers || {}).some((h) => h.toLowerCase() === "x-api-key");
      if (csrf && !keyed) req.headers["X-CSRFToken"] = csrf;
      return req;
    },
  });
});

// Test connection's field errors go beside their fields, as Connect's do;
// a new result clears what an earlier test said about the credentials and configuration.
document.addEventListener("htmx:afterSwap", (e) => {
  // A history restore (Back, Forward) swaps with no target: nothing was tested then.
  const target = e.detail?.target;
  if (!(target instanceof Element)) return;
  const result = target.querySelector("[data-field-errors]");
  const form = target.closest("form");
  if (!result || !form) return;
  const errors = JSON.parse(result.dataset.fieldErrors);
  form.querySelectorAll(".field").forEach((wrap) => {
    const control = wrap.querySelector("[name]");
    if (!control || !/^(credentials|config)\./.test(control.name)) return;
    const message = errors[control.name];
    let line = document.getElementById(`e-${control.name}`);
    wrap.classList.toggle("has-error", Boolean(message));
    if (message) {
      control.setAttribute("aria-invalid", "true");
      control.setAttribute("aria-describedby", `e-${control.name}`);
      if (!line) {
        line = document.createElement("p");
        line.className = "field-error";
        line.id = `e-${control.name}`;
        control.after(line);
      }
      line.textContent = message;
    } else {
      control.removeAttribute("aria-invalid");
      line?.remove();
    }
  });
  form.querySelector("[aria-invalid=true]")?.focus();
});

// The overview's sparkline bars take their height from data-height, as
// progress bars take their width (no inline style attributes under the CSP).
function applyHeights() {
  document.querySelectorAll("[data-height]").forEach((bar) => { bar.style.height = `${bar.dataset.height}%`; });
}
document.addEventListener("DOMContentLoaded", applyHeights);
document.addEventListener("htmx:afterSwap", applyHeights);

// An error said out of band beside a toolbar field (the records filter) marks that field too,
// and the mark goes when the error does.
document.addEventListener("htmx:afterSettle", () => {
  document.querySelectorAll(".toolbar-error[data-for]").forEach((line) => {
    const control = line.closest("form")?.querySelector(`[name="${line.dataset.for}"]`);
    if (!control) return;
    if (line.textContent.trim()) control.setAttribute("aria-invalid", "true");
    else control.removeAttribute("aria-invalid");
  });
});

// A stacked table's cells carry their column's name, shown above each
// value on phones where the header row is hidden (static/css/app.css, .table-stack).
function labelStackedCells(root) {
  (root || document).querySelectorAll("table.table-stack").forEach((table) => {
    const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    table.querySelectorAll("tbody tr").forEach((row) => {
      [...row.children].forEach((cell, i) => {
        if (!cell.hasAttribute("data-label")) cell.setAttribute("data-label", heads[i] || "");
      });
    });
  });
}
document.addEventListener("DOMContentLoaded", () => labelStackedCells(document));
document.addEventListener("htmx:afterSwap", () => labelStackedCells(document));
