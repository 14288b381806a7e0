"""Which regions may serve a deployment (issue 5's data residency).

    Standard, ProvisionedManaged, Batch   the account's own region only
    DataZone*                             the regions of the account's data zone
    Global*                               any region

Data zones are Lapis's reading of the catalogue's DataZoneStandard offers:
US and EU. A region outside both zones (e.g. japaneast) has a zone of one.
"""

from __future__ import annotations

DATA_ZONES = {
    "US": frozenset({"eastus", "eastus2", "northcentralus", "southcentralus", "westus", "westus3"}),
    "EU": frozenset({"francecentral", "germanywestcentral", "italynorth", "polandcentral", "spaincentral",
                     "swedencentral", "westeurope"}),
}


def zone_of(location: str) -> frozenset[str]:
    for regions in DATA_ZONES.values():
        if location in regions:
            return regions
    return frozenset({location})


def allowed_regions(sku: str, location: str, all_regions: frozenset[str]) -> frozenset[str]:
    """The locations whose engines may answer a deployment of `sku` in `location`."""
    if sku.startswith("Global"):
        return all_regions | {location}
    if sku.startswith("DataZone"):
        return zone_of(location)
    return frozenset({location})
