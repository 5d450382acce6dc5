"""Croissant 1.0 JSON-LD for a version, with the Responsible-AI (RAI) fields; and the card's JSON Schema.

``to_croissant`` turns ``datacard.json`` (plus the files of the version directory) into
``croissant.json``: one ``cr:FileSet`` and one ``cr:RecordSet`` per table, a
``cr:FileObject`` (with its sha256) per Parquet part, and the RAI fields
``rai:dataCollectionType: Synthetic`` and ``prov:wasGeneratedBy``. Paths are relative to
the version directory, where the file is written, so that a reader (``mlcroissant``)
resolves them without a URL.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "CROISSANT_CONTEXT",
    "CROISSANT_FILE",
    "DATA_TYPES",
    "card_schema",
    "to_croissant",
    "write_croissant",
]

CROISSANT_FILE = "croissant.json"
CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
PARQUET = "application/x-parquet"

#: The standard Croissant 1.0 ``@context``, plus ``prov`` for ``prov:wasGeneratedBy``.
CROISSANT_CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "prov": "http://www.w3.org/ns/prov#",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
    "equivalentProperty": "cr:equivalentProperty",
    "samplingRate": "cr:samplingRate",
}

#: Spec column type -> Croissant ``dataType``.
DATA_TYPES = {
    "int": "sc:Integer",
    "float": "sc:Float",
    "bool": "sc:Boolean",
    "category": "sc:Text",
    "text": "sc:Text",
    "llm_text": "sc:Text",
    "uuid": "sc:Text",
    "date": "sc:Date",
    "datetime": "sc:DateTime",
}

#: Hugging Face license ids -> SPDX URLs (Croissant recommends a URL); others are kept as text.
_SPDX = {
    "cc-by-4.0": "CC-BY-4.0",
    "cc-by-sa-4.0": "CC-BY-SA-4.0",
    "cc-by-nc-4.0": "CC-BY-NC-4.0",
    "cc0-1.0": "CC0-1.0",
    "apache-2.0": "Apache-2.0",
    "mit": "MIT",
    "odc-by": "ODC-By-1.0",
    "odbl": "ODbL-1.0",
}


# ---------------------------------------------------------------- schema


def card_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``datacard.json``, shipped as package data."""
    text = (resources.files("synthreg.datacards") / "schema" / "datacard.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


# ---------------------------------------------------------------- distribution


def _file_set_id(table: str) -> str:
    return f"{table}-parquet"


def _file_sets(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "@type": "cr:FileSet",
            "@id": _file_set_id(t["name"]),
            "name": _file_set_id(t["name"]),
            "description": f"The Parquet parts of table {t['name']}.",
            "encodingFormat": PARQUET,
            "includes": f"tables/{t['name']}/*.parquet",
        }
        for t in card["composition"]["tables"]
    ]


def _file_objects(card: dict[str, Any], version_dir: Path) -> list[dict[str, Any]]:
    """One FileObject per recorded part that exists on disk (sha256 from the card)."""
    out = []
    for fact in card["files"]:
        path = fact["path"]
        if not (version_dir / path).is_file():
            continue
        obj = {
            "@type": "cr:FileObject",
            "@id": path,
            "name": path,
            "contentUrl": path,
            "encodingFormat": PARQUET,
            "sha256": fact["sha256"],
        }
        if "bytes" in fact:
            obj["contentSize"] = f"{fact['bytes']} B"
        out.append(obj)
    return out


# ---------------------------------------------------------------- record sets


def _field(table: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    name = field["name"]
    out: dict[str, Any] = {
        "@type": "cr:Field",
        "@id": f"{table['name']}/{name}",
        "name": name,
        "description": field["description"],
        "dataType": DATA_TYPES[field["type"]],
        "source": {"fileSet": {"@id": _file_set_id(table["name"])}, "extract": {"column": name}},
    }
    parent = table["foreign_keys"].get(name)
    if parent:
        out["references"] = {"field": {"@id": parent.replace(".", "/", 1)}}
    return out


def _record_sets(card: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for table in card["composition"]["tables"]:
        record_set: dict[str, Any] = {
            "@type": "cr:RecordSet",
            "@id": table["name"],
            "name": table["name"],
            "description": table["description"] or f"Rows of table {table['name']}.",
            "field": [_field(table, f) for f in table["fields"]],
        }
        if table["primary_key"]:
            record_set["key"] = {"@id": f"{table['name']}/{table['primary_key']}"}
        out.append(record_set)
    return out


# ---------------------------------------------------------------- RAI and provenance


def _pii_text(pii: dict[str, Any]) -> str:
    if pii.get("findings"):
        kinds = sorted({f"{f['table']}.{f['column']} ({f['kind']})" for f in pii["findings"]})
        return "A scan found values that look like real personal data in: " + ", ".join(kinds) + "."
    if "findings" in pii:
        scanned = len(pii.get("columns_scanned", []))
        return (
            f"A scan of {scanned} text and category columns found no e-mail outside reserved example "
            "domains, no phone number outside fictional ranges, no valid payment card, IBAN or "
            "national id. Every record is synthetic."
        )
    return f"{pii.get('finding', 'not scanned')}. Every record is synthetic."


def _generated_by(card: dict[str, Any]) -> dict[str, Any]:
    gen, ident = card["generation"], card["identity"]
    return {
        "@type": "prov:Activity",
        "name": f"synthreg generation of {ident['name']} v{ident['version']}",
        "description": f"Sampled from a declarative spec ({gen['prompt']}); {gen['llm_calls']} LLM calls.",
        "prov:endedAtTime": ident["created_at"],
        "prov:wasAssociatedWith": {
            "@type": "prov:SoftwareAgent",
            "name": gen["model"],
            "softwareVersion": gen["synthreg_version"],
        },
        "prov:used": {"@type": "prov:Entity", "name": "spec.yaml", "sha256": gen["spec_sha256"]},
        "additionalProperty": [
            {"@type": "PropertyValue", "name": "seed", "value": gen["seed"]},
            {"@type": "PropertyValue", "name": "spec_sha256", "value": gen["spec_sha256"]},
            {"@type": "PropertyValue", "name": "model", "value": gen["model"]},
        ],
    }


def _rai(card: dict[str, Any], pii: dict[str, Any] | None) -> dict[str, Any]:
    risks, ident, gen = card["risks"], card["identity"], card["generation"]
    out: dict[str, Any] = {
        "rai:dataCollection": f"No data was collected: {risks['synthetic']}",
        "rai:dataCollectionType": "Synthetic",
        "rai:dataLimitations": risks["limitations"],
        "rai:personalSensitiveInformation": _pii_text(pii if pii is not None else risks["pii_scan"]),
        "rai:machineAnnotationTools": f"{gen['model']} (seed {gen['seed']})",
        "rai:dataReleaseMaintenancePlan": (
            f"Versioned in a synthreg registry: versions are immutable, fixes are new versions. "
            f"Status {card['maintenance']['status']}; contact {card['maintenance']['contact']}."
        ),
        "prov:wasGeneratedBy": _generated_by(card),
    }
    if ident["parent"]:
        out["prov:wasDerivedFrom"] = {"@type": "prov:Entity", "name": f"{ident['name']} v{ident['parent']}"}
    return out


# ---------------------------------------------------------------- the document


def _license(license_id: str) -> str:
    spdx = _SPDX.get(license_id.lower())
    return f"https://spdx.org/licenses/{spdx}.html" if spdx else license_id


def _cite_as(card: dict[str, Any]) -> str:
    ident = card["identity"]
    return (
        f"@misc{{{ident['name']}_v{ident['version']}, title={{{ident['name']} v{ident['version']}}}, "
        f"note={{synthetic dataset, content sha256 {ident['content_digest']}}}, "
        f"year={{{ident['created_at'][:4]}}}}}"
    )


def to_croissant(
    card: dict[str, Any], version_dir: Path, pii: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Croissant 1.0 JSON-LD for the version whose ``datacard.json`` is ``card``.

    ``pii`` is a :func:`synthreg.datacards.pii.scan` result; without it the card's own
    ``risks.pii_scan`` is quoted. File paths are relative to ``version_dir``.
    """
    ident, hf = card["identity"], card["huggingface"]
    return {
        "@context": CROISSANT_CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": ident["name"],
        "description": card["summary"] or hf["pretty_name"],
        "license": _license(ident["license"]),
        "version": f"{ident['version']}.0.0",
        "datePublished": ident["created_at"],
        "citeAs": _cite_as(card),
        "creator": {"@type": "sc:Person", "name": ident["created_by"]},
        "keywords": hf["tags"],
        "inLanguage": hf["language"],
        "identifier": f"sha256:{ident['content_digest']}",
        "distribution": _file_sets(card) + _file_objects(card, version_dir),
        "recordSet": _record_sets(card),
        **_rai(card, pii),
    }


def write_croissant(card: dict[str, Any], version_dir: Path, pii: dict[str, Any] | None = None) -> Path:
    """Write ``croissant.json`` into ``version_dir`` and return its path."""
    path = version_dir / CROISSANT_FILE
    document = to_croissant(card, version_dir, pii)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
