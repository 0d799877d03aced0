"""Who may associate: the calling-AE / source-address allowlist (settings.dicom.allowed_peers).

With ``require_known_peers`` (the default) an A-ASSOCIATE-RQ is answered with A-ASSOCIATE-RJ
(PS3.8 9.3.4, Table 9-21; result 1 = rejected-permanent, source 1 = DICOM UL service-user) when:

* the called AE title is not ours                       → reason 7, called-AE-title-not-recognized
* the calling AE title is not in ``allowed_peers``      → reason 3, calling-AE-title-not-recognized
* the calling AE title is known but the connection
  comes from outside that peer's ``networks``           → reason 3 as well: this AE title is not
  recognised *from that address* (Table 9-21 has no address reason; Orthanc's
  DicomCheckModalityHost answers the same way)

AE titles compare without leading/trailing spaces (not significant for VR AE, PS3.5 6.2), case
sensitive. An IPv4-mapped IPv6 address (``::ffff:10.0.0.1``) is checked as its IPv4 address.
The source address alone is checked earlier, when the TCP connection opens
(:meth:`PeerPolicy.address_allowed`, used by :mod:`dicom_node.ingest.connections`): an address in
no peer's networks never takes an association slot and is answered with the same reason 3.
``require_known_peers: false`` accepts everyone (and then per-AE settings still apply where the
AE title matches).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from dicom_node.settings import AllowedPeer, DicomSettings

REJECTED_PERMANENT = 0x01
SOURCE_SERVICE_USER = 0x01
REASON_CALLING_AE_NOT_RECOGNIZED = 0x03
REASON_CALLED_AE_NOT_RECOGNIZED = 0x07

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AssociationRejection:
    """The A-ASSOCIATE-RJ to send, and why (for the log; holds no patient data)."""

    result: int
    source: int
    diagnostic: int
    reason: str


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def normalize_address(text: str) -> IPAddress | None:
    """The peer's IP address; an IPv4-mapped IPv6 address as its IPv4 address; None if not one."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class PeerPolicy:
    """The allowlist, compiled once from settings; :meth:`check` is pure and thread-safe."""

    def __init__(self, dicom: DicomSettings) -> None:
        self.ae_title = dicom.ae_title.strip()
        self.require_known_peers = dicom.require_known_peers
        self._peers: dict[str, tuple[AllowedPeer, tuple[IPNetwork, ...]]] = {}
        for peer in dicom.allowed_peers:
            networks = tuple(ipaddress.ip_network(n, strict=False) for n in peer.networks)
            title = peer.ae_title.strip()
            if title in self._peers:  # the same AE listed twice: allow the union of its networks
                networks = self._peers[title][1] + networks
            self._peers[title] = (peer, networks)
        self._all_networks = tuple(n for _, nets in self._peers.values() for n in nets)

    def peer(self, calling_ae_title: str) -> AllowedPeer | None:
        entry = self._peers.get(calling_ae_title.strip())
        return entry[0] if entry else None

    def address_allowed(self, address: IPAddress | None) -> bool:
        """True when a connection from ``address`` may be admitted at all: it lies in the networks
        of at least one allowed peer (always True with ``require_known_peers: false``). Checked
        when the TCP connection opens, before it takes an association slot; the AE title, known
        only from the A-ASSOCIATE-RQ, is checked by :meth:`check` afterwards."""
        if not self.require_known_peers:
            return True
        return address is not None and any(address in network for network in self._all_networks)

    def check(
        self, *, calling_ae_title: str, called_ae_title: str, peer_address: str
    ) -> AssociationRejection | None:
        """None to accept, else the rejection to send."""
        if not self.require_known_peers:
            return None
        if called_ae_title.strip() != self.ae_title:
            return AssociationRejection(
                REJECTED_PERMANENT,
                SOURCE_SERVICE_USER,
                REASON_CALLED_AE_NOT_RECOGNIZED,
                "called AE title is not ours",
            )
        entry = self._peers.get(calling_ae_title.strip())
        if entry is None:
            return AssociationRejection(
                REJECTED_PERMANENT,
                SOURCE_SERVICE_USER,
                REASON_CALLING_AE_NOT_RECOGNIZED,
                "calling AE title not in allowed_peers",
            )
        address = normalize_address(peer_address)
        if address is None or not any(address in network for network in entry[1]):
            return AssociationRejection(
                REJECTED_PERMANENT,
                SOURCE_SERVICE_USER,
                REASON_CALLING_AE_NOT_RECOGNIZED,
                "calling AE title not allowed from this address",
            )
        return None
