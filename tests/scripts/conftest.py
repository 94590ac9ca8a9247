"""The scripts under the repository's ``scripts/`` are tested as importable modules."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
