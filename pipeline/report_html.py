"""The report as one self-contained HTML page: its Markdown rendered (markdown-it-py, CommonMark and
tables) and every local image it embeds inlined as a data: URI, so the one file can be mailed or
opened anywhere, offline."""

import base64
import html as escape
import re
from pathlib import Path

from markdown_it import MarkdownIt

TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.8em; display: block; overflow-x: auto; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; vertical-align: top; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; white-space: nowrap; }
img { max-width: 100%; }
td img { display: block; margin: 0 auto 0.3em; }
code { font-size: 0.9em; }
"""


def render(text: str) -> str:
    """Markdown to an HTML fragment: CommonMark with tables; the report's own HTML (<br>) passes."""
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(text)


def inline_images(fragment: str, folder: Path) -> str:
    """Each <img src="..."> naming a local PNG or JPEG under folder, as a data: URI of its bytes; a
    missing file keeps its src (the browser shows the alt text)."""

    def inline(match: re.Match) -> str:
        src = escape.unescape(match.group(2))
        path = folder / src
        kind = TYPES.get(path.suffix.lower())
        if kind is None or "://" in src or not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'{match.group(1)}"data:{kind};base64,{data}"'

    return re.sub(r'(<img [^>]*?src=)"([^"]*)"', inline, fragment)


def page(text: str, folder: Path, title: str) -> str:
    """The whole page: Markdown text whose image paths are relative to folder."""
    body = inline_images(render(text), Path(folder))
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape.escape(title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )
