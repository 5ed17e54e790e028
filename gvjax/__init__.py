"""gvjax: StyleGAN2 in JAX, driven by music.

`gvjax.render_song(song, out, model=..., timeline=..., **options)` renders a video in one
call (see `gvjax.cli.render_song`); it is imported on first use, so `import gvjax` stays light.
"""

__version__ = "0.1.0"


def __getattr__(name):
    if name == "render_song":
        from gvjax.cli import render_song

        return render_song
    raise AttributeError(f"module 'gvjax' has no attribute {name!r}")
