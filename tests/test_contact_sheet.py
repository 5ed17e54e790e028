"""`gvjax seeds`: a contact sheet of captioned seeds, to choose `--keyframe-seeds` from."""

import numpy as np
from conftest import run_cli
from PIL import Image

from gvjax.images import LABEL_HEIGHT, read_png


def test_contact_sheet_grid_tiles_and_labels(tmp_path):
    sheet_path = tmp_path / "sheet.png"
    r = run_cli("seeds", "bundled", "--seeds", "0-9", "--cols", "4", "-o", sheet_path)
    assert r.returncode == 0, r.stderr
    sheet = read_png(sheet_path)
    tile = 128  # the bundled model is 64x64: tiles are at least 128 px
    cell_h = tile + LABEL_HEIGHT
    assert sheet.shape == (3 * cell_h, 4 * tile, 3)  # 10 seeds, 4 a row: 3 rows

    r = run_cli("generate", "bundled", "--seeds", "0-9", "--trunc", "0.7", "--outdir", tmp_path / "png")
    assert r.returncode == 0, r.stderr
    labels = []
    for i in range(12):
        row, col = divmod(i, 4)
        cell = sheet[row * cell_h : (row + 1) * cell_h, col * tile : (col + 1) * tile]
        picture, label = cell[:tile], cell[tile:]
        if i >= 10:  # the empty cells of the last row are white
            assert (cell == 255).all()
            continue
        # The tile is `gvjax generate`'s image of that seed at psi 0.7, upscaled (Lanczos) to 128 px.
        expected = np.asarray(Image.open(tmp_path / "png" / f"seed{i:04d}.png").resize((tile, tile), Image.Resampling.LANCZOS))
        assert np.abs(picture.astype(int) - expected.astype(int)).max() <= 1, i
        dark = label.min(axis=-1) < 100
        assert dark.sum() > 20, f"no caption under seed {i}"
        assert not dark[:, tile // 2 :].any(), "the caption 'seed N' fits in the left half"
        labels.append(dark)
    # Captions differ between seeds (their digits), and equal where the text is the same prefix.
    assert all((labels[i] != labels[j]).any() for i in range(10) for j in range(i + 1, 10))
    assert (labels[1][:, :20] == labels[2][:, :20]).all()  # "seed " is drawn the same way


def test_contact_sheet_errors(tmp_path):
    r = run_cli("seeds", "bundled", "--seeds", "0-2000", "-o", tmp_path / "s.png")
    assert r.returncode == 2 and "at most 1024" in r.stderr
    r = run_cli("seeds", "bundled", "-o", tmp_path / "s.jpg")
    assert r.returncode == 2 and ".png" in r.stderr
    assert list(tmp_path.iterdir()) == []
