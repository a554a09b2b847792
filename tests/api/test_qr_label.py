"""Issue 5, the printable label (api/qr.py): the lot id and the mass in figures and in words
under the QR code, which an independent reader (zxing-cpp) decodes to the exact URL."""

from __future__ import annotations

import io

import pytest
import zxingcpp
from PIL import Image

from api.qr import label_png, label_url, mass_in_words, number_in_words
from ledger.events import MAX_MASS_MG

URL = label_url("https://gold.example.test/", "ALP-2026-118842", "ab" * 32)


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (13, "thirteen"),
        (21, "twenty-one"),
        (115, "one hundred fifteen"),
        (1001, "one thousand one"),
        (999_999, "nine hundred ninety-nine thousand nine hundred ninety-nine"),
        (10**12, "one trillion"),
    ],
)
def test_number_in_words(n: int, words: str) -> None:
    assert number_in_words(n) == words


@pytest.mark.parametrize(
    ("mass_mg", "words"),
    [
        (1, "one milligram"),
        (999, "nine hundred ninety-nine milligrams"),
        (1000, "one gram"),
        (1001, "one gram one milligram"),
        (44_800, "forty-four grams eight hundred milligrams"),
        (MAX_MASS_MG, "one billion grams"),
    ],
)
def test_mass_in_words(mass_mg: int, words: str) -> None:
    assert mass_in_words(mass_mg) == words


def test_label_url_is_exactly_the_protocols() -> None:
    assert URL == "https://gold.example.test/l/ALP-2026-118842?at=" + "ab" * 32


@pytest.mark.parametrize("mass_mg", [1, 44_800, MAX_MASS_MG - 1])
def test_labels_decode_to_the_url_whatever_the_mass(mass_mg: int) -> None:
    image = Image.open(io.BytesIO(label_png(URL, "ALP-2026-118842", mass_mg)))
    results = zxingcpp.read_barcodes(image)
    assert [r.text for r in results] == [URL]
    assert results[0].ec_level == "M"
    # the words fit on the label (it widens rather than cuts them): ink in their line, but
    # never in the outer columns
    words = image.convert("L").crop((0, image.height - 36, image.width, image.height))
    inked = [x for x in range(words.width) if any(words.getpixel((x, y)) < 128 for y in range(36))]
    assert inked and inked[0] > 2 and inked[-1] < words.width - 3
