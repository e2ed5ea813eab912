"""`ste view`: a judgement viewer in the browser, served locally.

`data` reads run directories (indexes, filters, pages; no HTTP), `server` serves it as a JSON API
plus the bundled static app (`static/`: plain HTML, CSS and JS, no external assets).
"""
