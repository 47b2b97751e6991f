"""Write the small seed corpus committed under fuzz/corpus/ (run once; outputs are committed).

``python fuzz/make_seeds.py`` needs Pillow and PyAV. Seeds are tiny on purpose: libFuzzer
mutates them, and its ``max_len`` follows the largest seed.
"""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).parent / "corpus"
sys.path.insert(0, str(Path(__file__).parent.parent))


def _image_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    out: dict[str, bytes] = {}
    for fmt, mode, ext in [
        ("PNG", "RGB", "png"),
        ("PNG", "RGBA", "png"),
        ("PNG", "P", "png"),
        ("PNG", "LA", "png"),
        ("PNG", "I;16", "png"),
        ("JPEG", "RGB", "jpg"),
        ("JPEG", "CMYK", "jpg"),
        ("JPEG", "L", "jpg"),
        ("GIF", "P", "gif"),
        ("BMP", "RGB", "bmp"),
        ("WEBP", "RGB", "webp"),
        ("TIFF", "RGB", "tif"),
        ("PPM", "RGB", "ppm"),
    ]:
        buf = io.BytesIO()
        base.convert(mode).save(buf, fmt)
        out[f"seed-{mode.replace(';', '')}.{ext}".lower()] = buf.getvalue()
    return out


def _video_seeds(tmp: Path) -> dict[str, bytes]:
    from tests.videos import write_clip

    out = {}
    for codec, ext in [("libx264", "mp4"), ("mpeg4", "avi"), ("mjpeg", "mkv"), ("libvpx", "webm")]:
        path = tmp / f"seed-{codec}.{ext}"
        try:
            write_clip(path, width=32, height=24, fps=10, frames=4, gop=2, codec=codec)
        except Exception as exc:  # an encoder missing from this FFmpeg build
            print(f"skip {codec}: {exc}")
            continue
        out[path.name] = path.read_bytes()
    return out


def main() -> None:
    import tempfile

    seeds = {"image": _image_seeds()}
    png = seeds["image"]["seed-rgb.png"]
    b64 = base64.b64encode(png).decode()
    seeds["data_uri"] = {
        "png.txt": f"data:image/png;base64,{b64}".encode(),
        "param.txt": f"data:image/jpeg;name=x.jpg;base64,{b64}".encode(),
        "nocomma.txt": b"data:image/png;base64",
        "plain.txt": b"data:text/plain,hi",
        "upper.txt": b"data:image/png;BASE64,AAAA",
        "video.txt": b"data:video/mp4;base64,AAAAGGZ0eXBtcDQy",
    }
    seeds["url"] = {
        f"u{i}.txt": u.encode()
        for i, u in enumerate(
            [
                "http://allowed.test/a.png",
                "https://cdn.allowed.test:8443/x/y.jpg?q=1#f",
                "http://allowed.test\\@evil.test/x",
                "http://evil.test@allowed.test/",
                "http://127.0.0.1/",
                "http://[::ffff:169.254.169.254]/",
                "http://2130706433/",
                "http://0x7f.1/",
                "file:///etc/passwd",
                "/etc/passwd",
                "gopher://allowed.test/",
                "http://ALLOWED.test./p",
                "http://xn--allowd-8ya.test/",
                "ftp://a/",
            ]
        )
    }
    with tempfile.TemporaryDirectory() as tmp:
        seeds["video"] = _video_seeds(Path(tmp))
    for target, files in seeds.items():
        (ROOT / target).mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (ROOT / target / name).write_bytes(data)
        print(target, len(files), "seeds")


if __name__ == "__main__":
    main()
