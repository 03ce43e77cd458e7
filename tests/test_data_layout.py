"""`data convert --layout`: COCO and OmniDocBench page annotations to region crops."""

from __future__ import annotations

import json
from pathlib import Path

from data_fixtures import invoke

# (category, box x0, y0, x1, y1, field, answer); colours make every region's pixels distinct
REGIONS = [
    ("text", (10, 12, 90, 30), "text", "Hello page"),
    ("table", (20, 60, 180, 120), "html", "<table><tr><td>1</td></tr></table>"),
    ("formula", (150, 5, 199, 40), "latex", r"E = mc^2"),  # 1 px from the right edge: margin clamps
    ("figure", (100, 130, 150, 149), "text", ""),
]


def render_page(path: Path, width: int = 200, height: int = 150) -> None:
    from PIL import Image, ImageDraw

    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    for x in range(0, width, 7):  # a pattern, so an off-by-one crop shows
        draw.line([(x, 0), (x, height)], fill=(x % 256, 90, 200))
    for i, (_, box, _, _) in enumerate(REGIONS):
        draw.rectangle([box[0], box[1], box[2] - 1, box[3] - 1], outline=(40 * i, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    page.save(path)


def coco() -> dict[str, object]:
    names = ["text", "table", "formula", "figure"]
    return {
        "images": [{"id": 7, "file_name": "p1.png", "width": 200, "height": 150}],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)],
        "annotations": [{"id": i, "image_id": 7, "category_id": names.index(c) + 1,
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], key: answer}
                        for i, (c, b, key, answer) in enumerate(REGIONS)],
    }


def expected_box(box: tuple[int, int, int, int], margin: int) -> tuple[int, int, int, int]:
    return max(0, box[0] - margin), max(0, box[1] - margin), min(200, box[2] + margin), min(150, box[3] + margin)


def check_crops(out: Path, margin: int) -> None:
    from PIL import Image

    samples = json.loads(out.read_text())
    page = Image.open("pages/p1.png").convert("RGB")
    prompts = ["<image>Text Recognition:", "<image>Table Recognition:", "<image>Formula Recognition:"]
    assert [s["messages"][0]["content"] for s in samples] == prompts
    assert [s["messages"][1]["content"] for s in samples] == [r[3] for r in REGIONS[:3]]
    for sample, (_, box, _, _) in zip(samples, REGIONS, strict=False):
        crop = Image.open(out.parent / sample["images"][0]).convert("RGB")
        want = expected_box(box, margin)
        assert crop.size == (want[2] - want[0], want[3] - want[1])
        assert crop.tobytes() == page.crop(want).tobytes()


def test_coco_regions_become_crops_with_their_prompts(tmp_path: Path) -> None:
    render_page(Path("pages/p1.png"))
    Path("coco.json").write_text(json.dumps(coco()))
    result = invoke("data", "convert", "pages", "--layout", "coco.json", "-o", "crops.json", "--margin", "3")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        "Warning: 3 regions smaller than the processor minimum (12544 pixels, 112x112), upscaled when read: "
        "page 0 (p1.png): region 0 (text) 86x24; page 0 (p1.png): region 1 (table) 166x66; "
        "page 0 (p1.png): region 2 (formula) 53x41",
        "converted: text 1, table 1, formula 1",
        "skipped: figure 1",
        "Wrote crops.json (3 samples)",
    ]
    check_crops(Path("crops.json"), 3)
    assert invoke("data", "validate", "crops.json").exit_code == 0


def test_omnidocbench_pages_with_polygons_ignore_and_a_category_map(tmp_path: Path) -> None:
    render_page(Path("pages/p1.png"))
    kinds = {"text": "text_block", "table": "table", "formula": "equation_isolated", "figure": "figure"}
    dets = [{"category_type": kinds[c], "poly": [b[0], b[1], b[2], b[1], b[2], b[3], b[0], b[3]],
             key: answer, "anno_id": i} for i, (c, b, key, answer) in enumerate(REGIONS)]
    dets.append({"category_type": "text_block", "poly": [0, 0, 5, 0, 5, 5, 0, 5], "text": "x", "ignore": True})
    dets.append({"category_type": "abandon", "poly": [0, 0, 5, 0, 5, 5, 0, 5], "text": "x"})
    pages = [{"layout_dets": dets, "page_info": {"image_path": "p1.png", "width": 200, "height": 150}}]
    Path("odb.json").write_text(json.dumps(pages))
    result = invoke("data", "convert", "pages", "--layout", "odb.json", "-o", "out/crops.json",
                    "--margin", "0", "--category-map", "abandon=skip")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[1:] == [
        "converted: text_block 1, table 1, equation_isolated 1",
        "skipped: figure 1, text_block (ignore) 1, abandon 1",
        "Wrote out/crops.json (3 samples)",
    ]
    check_crops(Path("out/crops.json"), 0)


def test_every_region_problem_in_one_run(tmp_path: Path) -> None:
    render_page(Path("pages/p1.png"))
    data = coco()
    data["images"].append({"id": 8, "file_name": "gone.png"})  # type: ignore[union-attr]
    data["annotations"] += [  # type: ignore[operator]
        {"image_id": 8, "category_id": 1, "bbox": [0, 0, 10, 10], "text": "t"},
        {"image_id": 7, "category_id": 1, "bbox": [250, 10, 20, 20], "text": "off the page"},
        {"image_id": 7, "category_id": 2, "bbox": [0, 0, 10, 10], "text": " "},
    ]
    Path("coco.json").write_text(json.dumps(data))
    result = invoke("data", "convert", "pages", "--layout", "coco.json", "-o", "crops.json")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[1:] == [
        "  page 0 (p1.png): region 4 (text): bbox: [250, 10, 270, 30] is empty or outside the 200x150 page",
        "  page 0 (p1.png): region 5 (table): html/text/content: missing or empty (the target of a table region)",
        "  page 1 (gone.png): image: not found: pages/gone.png",
        "  warning: 3 regions smaller than the processor minimum (12544 pixels, 112x112), upscaled when read: "
        "page 0 (p1.png): region 0 (text) 88x26; page 0 (p1.png): region 1 (table) 168x68; page 0 (p1.png): "
        "region 2 (formula) 54x43",
    ]
    assert not Path("crops.json").exists()


def test_bad_category_map_and_unknown_format(tmp_path: Path) -> None:
    render_page(Path("pages/p1.png"))
    Path("coco.json").write_text(json.dumps(coco()))
    result = invoke("data", "convert", "pages", "--layout", "coco.json", "-o", "c.json", "--category-map", "figure")
    assert (result.exit_code, result.stderr) == (
        1, "Error: --category-map 'figure': expected CATEGORY=TASK with TASK one of text, table, formula, skip\n")
    Path("other.json").write_text("{}")
    result = invoke("data", "convert", "pages", "--layout", "other.json", "-o", "c.json")
    assert result.exit_code == 1 and "not a COCO file" in result.stderr


def test_val_ratio_holds_out_whole_pages(tmp_path: Path) -> None:
    """A page's regions are all in train or all held out: a crop of a trained page would leak."""
    data: dict[str, list[dict[str, object]]] = {"images": [], "annotations": [],
                                                "categories": [{"id": 1, "name": "text"}]}
    from PIL import Image

    for page in range(6):
        render_page(Path(f"pages/p{page}.png"))
        with Image.open(f"pages/p{page}.png") as image:  # pages (and so crops) that differ
            image.convert("RGB").point(lambda v, page=page: (v + 10 * page) % 256).save(f"pages/p{page}.png")
        data["images"].append({"id": page, "file_name": f"p{page}.png"})
        data["annotations"] += [{"image_id": page, "category_id": 1, "bbox": [x, 10, 40, 20], "text": f"{page}-{x}"}
                                for x in (0, 50, 100)]
    Path("coco.json").write_text(json.dumps(data))
    result = invoke("data", "convert", "pages", "--layout", "coco.json", "-o", "crops.json", "--val-ratio", "0.34")
    assert result.exit_code == 0, result.stderr
    train, val = json.loads(Path("crops.json").read_text()), json.loads(Path("crops_val.json").read_text())
    def page_of(sample: dict[str, object]) -> str:
        return str(sample["messages"][1]["content"]).split("-")[0]  # type: ignore[index]

    assert {page_of(s) for s in train}.isdisjoint({page_of(s) for s in val})
    assert (len(train), len(val)) == (12, 6)  # 2 of the 6 pages, 3 regions each


def test_suspicious_annotations_are_warned_about(tmp_path: Path) -> None:
    render_page(Path("pages/p1.png"))  # 200x150
    data = coco()
    data["images"][0].update(width=400, height=300)  # type: ignore[index]
    table = data["annotations"][1]  # type: ignore[index]
    table["text"] = table.pop("html")  # a table region with text but no html
    Path("coco.json").write_text(json.dumps(data))
    result = invoke("data", "convert", "pages", "--layout", "coco.json", "-o", "crops.json")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert ("Warning: page 0 (p1.png): the annotations declare 400x300, the image is 200x150: its boxes are read "
            "in the image's pixels (check that they belong to this image)") in lines
    assert ("Warning: page 0 (p1.png): region 1 (table): no html; its text is the target of a Table Recognition: "
            "sample, which GLM-OCR answers in HTML") in lines


def test_every_structural_problem_of_the_annotation_file(tmp_path: Path) -> None:
    render_page(Path("pages/p1.png"))
    data = coco()
    data["annotations"] += [{"image_id": 99, "category_id": 42, "bbox": "x"}]  # type: ignore[operator]
    Path("coco.json").write_text(json.dumps(data))
    result = invoke("data", "convert", "pages", "--layout", "coco.json", "-o", "crops.json")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: coco.json: 3 problems",
        "  annotations[4]: image_id: no image with this id",
        "  annotations[4]: bbox: expected [x, y, width, height]",
        "  annotations[4]: category_id: 42 is not in categories"]
    pages = [{"layout_dets": [{"poly": [1, 2]}], "page_info": {}}, {"layout_dets": "none", "page_info": {"image_path": "p1.png"}}]
    Path("odb.json").write_text(json.dumps(pages))
    result = invoke("data", "convert", "pages", "--layout", "odb.json", "-o", "crops.json")
    assert result.stderr.splitlines() == [
        "Error: odb.json: 4 problems",
        "  [0].page_info.image_path: missing",
        "  [0].layout_dets[0].category_type: missing",
        "  [0].layout_dets[0].poly: expected [x1, y1, ..., x4, y4]",
        "  [1].layout_dets: expected a list"]
