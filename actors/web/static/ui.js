// Small pieces the panels share: elements whose text is always textContent, buttons, and a
// status line.

export const $ = (id) => document.getElementById(id);

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

export function button(label, onClick, cls = "") {
  const b = el("button", cls, label);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

// A function that shows a line in the status element `id` (red when it is an error).
export function statusLine(id) {
  return (text, error = false) => {
    const line = $(id);
    line.textContent = text;
    line.classList.toggle("error", error);
  };
}
