#!/bin/bash
# Render every docs/diagrams/*.dot to an SVG beside it (needs Graphviz: apt-get install graphviz).
set -euo pipefail
cd "$(dirname "$0")"
for f in *.dot; do dot -Tsvg "$f" -o "${f%.dot}.svg"; echo "rendered ${f%.dot}.svg"; done
