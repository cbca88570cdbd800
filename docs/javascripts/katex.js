// Typeset the output of pymdownx.arithmatex (generic mode) with the KaTeX bundled under
// javascripts/vendor/katex/: formulas render without any network access.
// Arithmatex writes inline math as <span class="arithmatex">\(...\)</span> and display math as
// <div class="arithmatex">\[...\]</div> (or a bare \begin{env}...\end{env}).
(function () {
  "use strict";

  function typeset(root) {
    root.querySelectorAll(".arithmatex").forEach(function (el) {
      if (el.querySelector(".katex")) return; // already typeset (instant navigation)
      var tex = el.textContent.trim();
      var display = el.tagName !== "SPAN";
      var m = /^\\\(([\s\S]*)\\\)$/.exec(tex) || /^\\\[([\s\S]*)\\\]$/.exec(tex);
      if (m) tex = m[1];
      katex.render(tex, el, { displayMode: display, throwOnError: false });
    });
  }

  if (typeof document$ !== "undefined") {
    document$.subscribe(function () { typeset(document.body); }); // Material for MkDocs
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { typeset(document.body); });
  } else {
    typeset(document.body);
  }
})();
