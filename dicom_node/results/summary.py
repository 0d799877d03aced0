"""A one-page summary of a job's results, for PACS that show neither SEG nor SR (issue 14 item 4).

:func:`summary_content` gathers what the page says — the findings table, each structure's figures
(results.figures: the numbers the SEG, SR and GSPS say), key-slice thumbnails with outlines
(results.render), the algorithm and its version, and "not for diagnosis" where the model is
research-grade — and two renderers draw it:

* :func:`summary_pdf`: a PDF (reportlab, vector text, selectable and searchable) for the
  Encapsulated PDF object (results.pdf);
* :func:`summary_page`: the same page as an RGB picture (Pillow) for the Secondary Capture summary.

No patient identifier is printed (the DICOM header carries them; PS3.3 C.24.2 BurnedInAnnotation
NO), so the page never needs a font for a name in a script the bundled font lacks. Fonts: Bitstream
Vera, shipped inside reportlab, for both renderers (same look, "−" and "×" included).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dicom_node.contracts import AnalysisResult
from dicom_node.results.coding import segment_color
from dicom_node.results.figures import (
    clamp_slice,
    format_hu,
    format_size_mm,
    format_volume_ml,
    image_label,
    segment_figures,
)
from dicom_node.results.labels import LabelStats
from dicom_node.results.render import key_slice_pictures, render_slice
from dicom_node.results.sources import SourceVolume

RGB = tuple[int, int, int]
NOT_FOR_DIAGNOSIS = "RESEARCH-GRADE AI RESULT - NOT FOR DIAGNOSIS"
CLASSICAL_NOTE = "Classical image analysis (HU thresholds, morphology); results for review by a radiologist"
THUMBNAIL_WINDOW = (-160.0, 240.0)
MAX_THUMBNAILS = 6
THUMBNAIL_PX = 256


@dataclass(frozen=True)
class Thumbnail:
    caption: str  # "series 3, image 282: Liver lesion"
    image: Image.Image  # RGB, the key slice with its outlines and captions burned in
    slice_index: int


@dataclass(frozen=True)
class SummaryContent:
    title: str
    algorithm: str  # "<name> <version>"
    research_grade: bool
    study_line: str  # what was analysed, without patient identifiers
    findings_header: tuple[str, ...]
    findings: tuple[tuple[str, ...], ...]
    structures_header: tuple[str, ...]
    structures: tuple[tuple[str, ...], ...]
    colours: tuple[RGB, ...]  # one per structure row
    thumbnails: tuple[Thumbnail, ...]
    footer: str
    remarks: tuple[str, ...] = field(default_factory=tuple)  # the pipeline's other words (unmatched prompts)

    @property
    def warning(self) -> str:
        return NOT_FOR_DIAGNOSIS if self.research_grade else CLASSICAL_NOTE

    @property
    def key_slices(self) -> tuple[int, ...]:
        return tuple(t.slice_index for t in self.thumbnails)


def summary_content(
    *,
    hu: np.ndarray,
    stats: LabelStats,
    analysis: AnalysisResult,
    volume: SourceVolume,
    manufacturer: str,
    content_datetime: datetime,
    job_id: str,
) -> SummaryContent:
    figures = segment_figures(stats, analysis, volume)
    findings = tuple(
        (
            f.label,
            format_size_mm(f.size_mm),
            format_volume_ml(f.volume_ml) if f.volume_ml is not None else "",
            format_hu(f.mean_hu) if f.mean_hu is not None else "",
            image_label(volume, clamp_slice(f.key_slice_index, volume)),
            f"{f.score:.2f}",
        )
        for f in analysis.findings
    )
    structures = tuple(
        (
            fig.name,
            format_volume_ml(fig.volume_ml),
            format_hu(fig.mean_hu) if fig.mean_hu is not None else "",
            f"{round(fig.std_hu):d} HU" if fig.std_hu is not None else "",
            image_label(volume, fig.key_slice)
            if fig.key_slice is not None and not fig.segment.diffuse
            else "whole",
        )
        for fig in figures
    )
    # Thumbnails: each finding's key slice, then the compact structures' (largest first).
    wanted: list[tuple[int, str]] = []
    for finding in analysis.findings:
        wanted.append((clamp_slice(finding.key_slice_index, volume), finding.label))
    for fig in sorted(figures, key=lambda f: -f.voxel_count):
        if not fig.segment.diffuse and fig.key_slice is not None:
            wanted.append((fig.key_slice, fig.name))
    if not wanted:
        wanted = [(f.key_slice, f.name) for f in figures if f.key_slice is not None]
    chosen: dict[int, list[str]] = {}
    for k, name in wanted:
        if k in chosen:
            chosen[k].append(name)
        elif len(chosen) < MAX_THUMBNAILS:
            chosen[k] = [name]
    keys = sorted(chosen)
    pictures = key_slice_pictures(
        stats.labelmap,
        segments=analysis.segments,
        findings=analysis.findings,
        key_slices=keys,
        captions={},  # names only on thumbnails: the figures are in the table
    )
    thumbnails = []
    for picture in pictures:
        k = picture.slice_index
        scale = max(1, -(-THUMBNAIL_PX // max(volume.columns, 1)))
        image = render_slice(hu[k], stats.labelmap[k], picture, window=THUMBNAIL_WINDOW, scale=scale)
        image.thumbnail((THUMBNAIL_PX * 2, THUMBNAIL_PX * 2))
        thumbnails.append(
            Thumbnail(caption=f"{image_label(volume, k)}: {', '.join(chosen[k])}", image=image, slice_index=k)
        )
    first = volume.slices[0].dataset
    study_date = str(first.get("StudyDate") or "")
    date_text = f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:8]}" if len(study_date) == 8 else "unknown"
    series_number = first.get("SeriesNumber")
    study_line = (
        f"CT series {series_number if series_number not in (None, '') else '(no number)'}, "
        f"{len({s.sop_instance_uid for s in volume.slices})} images, {len(volume.slices)} slices; "
        f"study date {date_text}"
    )
    replaced = tuple(f"{fig.name}:" for fig in figures)
    remarks = tuple(d for d in analysis.descriptions if d and not d.startswith(replaced))
    return SummaryContent(
        title="AI result summary",
        algorithm=f"{analysis.algorithm_name} {analysis.algorithm_version}",
        research_grade=analysis.research_grade,
        study_line=study_line,
        findings_header=("Finding", "Size", "Volume", "Mean", "Key image", "Score"),
        findings=findings,
        structures_header=("Structure", "Volume", "Mean", "SD", "Key image"),
        structures=structures,
        colours=tuple(segment_color(fig.segment) for fig in figures),
        thumbnails=tuple(thumbnails),
        footer=(
            f"Written by {manufacturer} on {content_datetime:%Y-%m-%d %H:%M}; "
            f"algorithm {analysis.algorithm_name} {analysis.algorithm_version}; job {job_id}. "
            "Unverified: not reviewed by a person."
        ),
        remarks=remarks,
    )


# ---------------------------------------------------------------------------------------------
# Fonts (Bitstream Vera from reportlab's package, for both renderers)
# ---------------------------------------------------------------------------------------------


def _vera(bold: bool = False) -> Path:
    import reportlab

    return Path(os.path.dirname(reportlab.__file__)) / "fonts" / ("VeraBd.ttf" if bold else "Vera.ttf")


_REGISTERED = False


def _register_fonts() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    pdfmetrics.registerFont(TTFont("Vera", str(_vera())))
    pdfmetrics.registerFont(TTFont("Vera-Bold", str(_vera(bold=True))))
    _REGISTERED = True


# ---------------------------------------------------------------------------------------------
# PDF (reportlab platypus)
# ---------------------------------------------------------------------------------------------


def summary_pdf(content: SummaryContent, *, when: datetime) -> bytes:
    """The summary as PDF bytes (A4), reproducible for the same content and time."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Image as FlowImage
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    _register_fonts()
    body = ParagraphStyle("body", fontName="Vera", fontSize=9, leading=12)
    heading = ParagraphStyle(
        "heading", parent=body, fontName="Vera-Bold", fontSize=11, leading=15, spaceBefore=6
    )
    title = ParagraphStyle("title", parent=body, fontName="Vera-Bold", fontSize=16, leading=20)
    warning = ParagraphStyle(
        "warning",
        parent=body,
        fontName="Vera-Bold",
        fontSize=10,
        textColor=colors.HexColor("#b00020") if content.research_grade else colors.HexColor("#404040"),
    )

    def escape(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def table(header: Sequence[str], rows: Sequence[Sequence[str]], swatches: Sequence[RGB] = ()) -> Table:
        data = [list(header), *[list(r) for r in rows]]
        t = Table(data, repeatRows=1, hAlign="LEFT")
        style = [
            ("FONT", (0, 0), (-1, -1), "Vera", 8.5),
            ("FONT", (0, 0), (-1, 0), "Vera-Bold", 8.5),
            ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black),
            ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f2f2f2")]),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ]
        for row, rgb in enumerate(swatches, start=1):
            style.append(("LINEBEFORE", (0, row), (0, row), 5, colors.Color(*(c / 255 for c in rgb))))
        t.setStyle(TableStyle(style))
        return t

    story = [
        Paragraph(escape(content.title), title),
        Paragraph(escape(f"Algorithm: {content.algorithm}"), body),
        Paragraph(escape(content.study_line), body),
        Spacer(1, 3 * mm),
        Paragraph(escape(content.warning), warning),
        Paragraph("Findings", heading),
    ]
    if content.findings:
        story.append(table(content.findings_header, content.findings))
    else:
        story.append(Paragraph("No finding reported by this algorithm.", body))
    story.append(Paragraph("Structures", heading))
    if content.structures:
        story.append(table(content.structures_header, content.structures, content.colours))
    else:
        story.append(Paragraph("No structure segmented.", body))
    for remark in content.remarks:
        story.append(Paragraph(escape(remark), body))
    if content.thumbnails:
        story.append(Paragraph("Key images", heading))
        cells = []
        for thumbnail in content.thumbnails:
            buffer = io.BytesIO()
            thumbnail.image.save(buffer, format="PNG")
            buffer.seek(0)
            width, height = thumbnail.image.size
            side = 56 * mm
            scale = side / max(width, height)
            cells.append(
                [
                    FlowImage(buffer, width=width * scale, height=height * scale),
                    Paragraph(escape(thumbnail.caption), body),
                ]
            )
        rows = [cells[i : i + 3] for i in range(0, len(cells), 3)]
        grid = Table([[c for c in row] + [""] * (3 - len(row)) for row in rows], hAlign="LEFT")
        grid.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
        story.append(grid)
    story.append(Spacer(1, 4 * mm))
    story.append(
        Paragraph(escape(content.footer), ParagraphStyle("footer", parent=body, fontSize=7, leading=9))
    )

    out = io.BytesIO()
    document = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=content.title,
        author=content.algorithm,
        subject=content.warning,
        creator="ct-ai-node",
        invariant=1,  # no random document id: the same job writes the same bytes
    )
    document.build(story, onFirstPage=lambda canvas, _: canvas.setCreator("ct-ai-node"))
    del when  # the PDF carries no clock time of its own (invariant); the footer says the job's
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# The same page as a picture (Secondary Capture)
# ---------------------------------------------------------------------------------------------


def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype(str(_vera(bold)), size)
    except (OSError, ImportError):
        return ImageFont.load_default()


def summary_page(content: SummaryContent, *, width: int = 1024) -> Image.Image:
    """The summary as an RGB page (portrait, A4 proportions) for a Secondary Capture image."""
    height = round(width * 297 / 210)
    page = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    margin = width // 28
    y = margin
    regular, bold, big = _font(width // 64), _font(width // 64, bold=True), _font(width // 36, bold=True)

    def line(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, colour: RGB = (0, 0, 0)) -> None:
        nonlocal y
        for wrapped in _wrap(draw, text, font, width - 2 * margin):
            draw.text((margin, y), wrapped, fill=colour, font=font)
            box = draw.textbbox((margin, y), wrapped, font=font)
            y = int(box[3]) + width // 120

    def rows(
        header: Sequence[str], table_rows: Sequence[Sequence[str]], swatches: Sequence[RGB] = ()
    ) -> None:
        nonlocal y
        columns = len(header)
        widths = [
            max(draw.textlength(str(r[c]), font=regular) for r in [header, *table_rows]) + width // 40
            for c in range(columns)
        ]
        x0 = margin + (width // 60 if swatches else 0)
        for index, row in enumerate([header, *table_rows]):
            x = x0
            font = bold if index == 0 else regular
            if index and swatches:
                draw.rectangle(
                    [margin, y + 2, margin + width // 90, y + width // 64], fill=swatches[index - 1]
                )
            for c, cell in enumerate(row):
                draw.text((x, y), str(cell), fill=(0, 0, 0), font=font)
                x += int(widths[c])
            y += width // 64 + width // 160
            if index == 0:
                draw.line([margin, y - 2, width - margin, y - 2], fill=(0, 0, 0), width=1)

    line(content.title, big)
    line(f"Algorithm: {content.algorithm}", regular)
    line(content.study_line, regular)
    line(content.warning, bold, (176, 0, 32) if content.research_grade else (64, 64, 64))
    y += width // 80
    line("Findings", bold)
    if content.findings:
        rows(content.findings_header, content.findings)
    else:
        line("No finding reported by this algorithm.", regular)
    y += width // 80
    line("Structures", bold)
    if content.structures:
        rows(content.structures_header, content.structures, content.colours)
    else:
        line("No structure segmented.", regular)
    for remark in content.remarks:
        line(remark, regular)
    if content.thumbnails:
        y += width // 80
        line("Key images", bold)
        side = (width - 2 * margin - 2 * (width // 50)) // 3
        for index, thumbnail in enumerate(content.thumbnails):
            column, row = index % 3, index // 3
            x = margin + column * (side + width // 50)
            top = y + row * (side + width // 20)
            picture = thumbnail.image.copy()
            picture.thumbnail((side, side))
            page.paste(picture, (x, top))
            draw.text(
                (x, top + picture.height + 2), thumbnail.caption, fill=(0, 0, 0), font=_font(width // 80)
            )
        y += ((len(content.thumbnails) + 2) // 3) * (side + width // 20)
    small = _font(width // 90)
    footer = _wrap(draw, content.footer, small, width - 2 * margin)
    y = height - margin - len(footer) * (width // 70)
    for wrapped in footer:
        draw.text((margin, y), wrapped, fill=(80, 80, 80), font=small)
        y += width // 70
    return page


def _wrap(
    draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, max_width: int
) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``max_width`` pixels."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and draw.textlength(candidate, font=font) > max_width:
            lines.append(current)
            current = word
        else:
            current = candidate
    lines.append(current)
    return lines
