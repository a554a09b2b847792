"""QR codes and printable labels for lots (PROTOCOL.md section 7)."""

from __future__ import annotations

import io
from urllib.parse import quote

import qrcode
import qrcode.constants
import qrcode.image.svg
from PIL import Image, ImageDraw, ImageFont

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]  # fmt: skip
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))


def label_url(public_url: str, lot: str, head: str) -> str:
    """The URL a lot's QR code holds: ``{public}/l/{lot}?at={head}``."""
    return f"{public_url.rstrip('/')}/l/{quote(lot, safe='')}?at={head}"


def _qr(url: str) -> qrcode.QRCode:  # type: ignore[type-arg]
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=4)
    code.add_data(url)
    code.make(fit=True)
    return code


def qr_png(url: str) -> bytes:
    """A PNG QR code (error correction M) holding exactly ``url``."""
    buffer = io.BytesIO()
    _qr(url).make_image().save(buffer, format="PNG")
    return buffer.getvalue()


def qr_svg(url: str) -> bytes:
    """An SVG QR code (error correction M) holding exactly ``url``."""
    buffer = io.BytesIO()
    _qr(url).make_image(image_factory=qrcode.image.svg.SvgPathImage).save(buffer)
    return buffer.getvalue()


def number_in_words(n: int) -> str:
    """English words for a whole number ≥ 0 (for labels: words resist tampering)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else "")
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + (" " + number_in_words(rest) if rest else "")
    for size, name in _SCALES:
        if n >= size:
            rest = n % size
            return (
                number_in_words(n // size)
                + f" {name}"
                + (" " + number_in_words(rest) if rest else "")
            )
    raise AssertionError("unreachable")


def mass_in_words(mass_mg: int) -> str:
    """A mass in grams and milligrams, in words: 44800 → 'forty-four grams eight hundred
    milligrams'."""
    grams, mg = divmod(mass_mg, 1000)
    parts = []
    if grams:
        parts.append(f"{number_in_words(grams)} gram{'s' if grams != 1 else ''}")
    if mg or not grams:
        parts.append(f"{number_in_words(mg)} milligram{'s' if mg != 1 else ''}")
    return " ".join(parts)


def label_png(url: str, lot: str, mass_mg: int) -> bytes:
    """A printable label: the QR code with the lot id and its mass in figures and words."""
    code = _qr(url).make_image().get_image().convert("RGB")
    font = ImageFont.load_default(size=18)
    small = ImageFont.load_default(size=14)
    lines = [(lot, font), (f"{mass_mg / 1000:,.3f} g", font), (mass_in_words(mass_mg), small)]
    width = max(code.width, 40 + max(int(font.getlength(t)) for t, _ in lines[:2]))
    width = max(width, 20 + int(small.getlength(lines[2][0])))
    label = Image.new("RGB", (width, code.height + 90), "white")
    label.paste(code, ((width - code.width) // 2, 0))
    draw = ImageDraw.Draw(label)
    y = code.height
    for text, face in lines:
        draw.text(((width - face.getlength(text)) / 2, y), text, fill="black", font=face)
        y += 26
    buffer = io.BytesIO()
    label.save(buffer, format="PNG")
    return buffer.getvalue()
