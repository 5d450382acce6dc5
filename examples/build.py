"""Build every example spec into a registry (the `examples` stage of the project's dvc.yaml).

python examples/build.py --registry build/registry --scale 0.1 --out build/examples.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=Path("build/registry"))
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("build/examples.json"))
    args = parser.parse_args(argv)

    import synthreg

    shutil.rmtree(args.registry, ignore_errors=True)
    reg = synthreg.init(args.registry)
    summary = {}
    for spec in sorted(HERE.glob("*.yaml")):
        result = reg.create(spec.stem, spec=spec, scale=args.scale, message="example build")
        summary[spec.stem] = result.to_dict()
        print(
            f"{spec.stem}: v{result.version} {result.status} {sum(result.rows.values()):,} rows "
            f"in {result.seconds:.1f}s",
            file=sys.stderr,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
