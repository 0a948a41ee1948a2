"""Pin the image a release runs in one overlay: `python scripts/release_image.py prod 0.2.0 sha256:<digest>`.

Rewrites the `newTag`/`digest` of the overlay's `images:` entry for the data-plane image in place (comments
and layout kept; an overlay without one, such as read-replicas, which inherits prod's, gets its own), the step
`kustomize edit set image` would do where kustomize itself is not installed.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "registry.example.com/rentscout/rentscout-dataplane"
_ENTRY = re.compile(r"(?P<head>^  - name: " + re.escape(IMAGE) + r"\n)(?P<body>(?:^    .*\n)*)", re.M)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def pin(kustomization: Path, tag: str, digest: str | None) -> None:
    """Set the entry's tag (and digest; None drops it) in `kustomization`."""
    if not _TAG.match(tag):
        raise SystemExit(f"not an image tag: {tag!r}")
    if digest is not None and not _DIGEST.match(digest):
        raise SystemExit(f"not a sha256 digest: {digest!r}")
    text = kustomization.read_text()
    match = _ENTRY.search(text)
    if match is None:  # an overlay that inherits its base's pin (read-replicas): give it its own
        if re.search(r"^images:", text, re.M):
            raise SystemExit(f"{kustomization}: its `images:` has no entry named {IMAGE}")
        text = text.rstrip("\n") + f"\n\nimages:\n  - name: {IMAGE}\n"
        match = _ENTRY.search(text)
        assert match is not None
    keep = [line for line in match["body"].splitlines(True) if not re.match(r"^    (newTag|digest):", line)]
    body = "".join(keep) + f"    newTag: {tag}\n" + (f"    digest: {digest}\n" if digest else "")
    kustomization.write_text(text[: match.start("body")] + body + text[match.end("body") :])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overlay", help="k8s/overlays/<overlay> (dev, prod, read-replicas), or a kustomization dir")
    parser.add_argument("tag")
    parser.add_argument("digest", nargs="?", help="sha256:<64 hex> (required for prod)")
    args = parser.parse_args()
    folder = Path(args.overlay) if "/" in args.overlay else ROOT / "k8s" / "overlays" / args.overlay
    if args.overlay == "prod" and not args.digest:
        raise SystemExit("prod runs images pinned by digest: pass sha256:<digest> (docker buildx imagetools inspect)")
    pin(folder / "kustomization.yaml", args.tag, args.digest)
    print(f"{folder / 'kustomization.yaml'}: {IMAGE}:{args.tag}" + (f"@{args.digest}" if args.digest else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
