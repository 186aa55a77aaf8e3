// Renders math with KaTeX: reads a JSON list of [tex, display] pairs on stdin and writes a JSON list
// with one entry per pair, null when KaTeX renders it, else KaTeX's error message (tests/test_katex.py).
const katex = require("katex");

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const results = JSON.parse(input).map(([tex, display]) => {
    try {
      // strict "error": what KaTeX would only warn about (a non-LaTeX construct) fails too
      katex.renderToString(tex, { displayMode: display, throwOnError: true, strict: "error" });
      return null;
    } catch (e) {
      return String(e.message);
    }
  });
  process.stdout.write(JSON.stringify(results));
});
