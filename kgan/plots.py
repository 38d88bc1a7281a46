"""Pictures of samples: image grids and 2-D scatter plots, as arrays or PNG files."""

import io

import numpy as np


def image_grid(images, columns=8, min_cell=32, padding=2):
    """Tiles images [N, H, W, C] in [-1, 1] into one uint8 image, grey lines between cells.

    Images smaller than `min_cell` pixels are enlarged by pixel repetition (8x8 digits become
    32x32 cells), so the grid is readable. Cell (r, c) starts at pixel
    (padding + r * (H' + padding), padding + c * (W' + padding)).
    """
    images = np.asarray(images, dtype="float32")
    if images.ndim != 4:
        raise ValueError(f"image_grid takes images [N, H, W, C]; got shape {images.shape}")
    scale = max(1, -(-min_cell // images.shape[1]))
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    n, height, width, channels = images.shape
    rows = -(-n // columns)
    pitch_y, pitch_x = height + padding, width + padding
    grid = np.zeros((padding + rows * pitch_y, padding + columns * pitch_x, channels), dtype="float32")
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        y, x = padding + r * pitch_y, padding + c * pitch_x
        grid[y : y + height, x : x + width] = image
    return np.round((np.clip(grid, -1.0, 1.0) + 1.0) * 127.5).astype("uint8")


def scatter_image(points, reference=None, title=None, size=4.0, dpi=80):
    """Renders 2-D points (and optional reference points, grey) to a uint8 RGB image [H, W, 3].

    Drawn on a `matplotlib.figure.Figure` of its own (no pyplot state), so any thread may call it.
    """
    from matplotlib.figure import Figure
    from PIL import Image

    points = np.asarray(points)
    figure = Figure(figsize=(size, size), dpi=dpi)
    axes = figure.subplots()
    if reference is not None:
        reference = np.asarray(reference)
        axes.scatter(reference[:, 0], reference[:, 1], s=2, c="0.75", label="real")
    axes.scatter(points[:, 0], points[:, 1], s=2, c="C3", label="generated")
    axes.set_aspect("equal")
    if title:
        axes.set_title(title)
    axes.legend(loc="upper right", fontsize="small", markerscale=4)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def sample_picture(samples, reference=None, title=None):
    """uint8 [H, W, C] picture of samples: a grid for images, a scatter plot for 2-D points."""
    samples = np.asarray(samples)
    if samples.ndim == 4:
        return image_grid(samples)
    if samples.ndim == 2 and samples.shape[1] == 2:
        return scatter_image(samples, reference, title)
    raise ValueError(f"cannot picture samples of shape {samples.shape}: expected [N, H, W, C] or [N, 2]")


def save_png(picture, path):
    """Writes a uint8 [H, W, C] picture (C = 1 or 3) as a PNG file."""
    from PIL import Image

    picture = np.asarray(picture)
    if picture.shape[-1] == 1:
        picture = picture[..., 0]
    Image.fromarray(picture).save(path, format="PNG")
    return path
