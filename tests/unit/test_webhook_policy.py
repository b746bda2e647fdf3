"""The webhook SSRF rule: which addresses a callback may reach, embedded IPv4 included."""

from __future__ import annotations

import ipaddress

import pytest

from libs import webhooks
from libs.webhooks import WebhookUrlError, check_target, embedded_ipv4, is_public

REFUSED = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # metadata
    "100.64.0.1",
    "100.127.255.254",  # carrier-grade NAT (not "private" to ipaddress)
    "192.0.0.8",
    "192.0.0.170",  # IETF protocol assignments
    "192.0.2.1",
    "198.51.100.1",
    "203.0.113.1",
    "198.18.0.1",  # documentation, benchmarking
    "192.88.99.1",  # 6to4 relay anycast
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "ff02::1",
    "100::1",
    "2001:db8::1",
    "::ffff:10.0.0.1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::808:808",  # IPv4-compatible (deprecated)
    "2002:a00:1::1",
    "2002:7f00:1::1",
    "2002:6440:1::1",  # 6to4 of 10/8, 127/8, 100.64/10
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo of client 10.0.0.1
    "64:ff9b::a00:1",
    "64:ff9b::7f00:1",
    "64:ff9b::c000:8",  # NAT64 of 10/8, 127/8, 192.0.0.8
    "64:ff9b:1::808:808",  # local-use NAT64
]
ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "192.0.0.9",  # 192.0.0.9: IANA says global
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "2002:808:808::1",
    "64:ff9b::808:808",  # embedding a global IPv4
]


@pytest.mark.parametrize("address", REFUSED)
def test_not_globally_routable_is_refused(address):
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ALLOWED)
def test_globally_routable_is_allowed(address):
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address, inner",
    [
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("2002:a00:1::1", "10.0.0.1"),
        ("64:ff9b::a00:1", "10.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1"),
        ("2606:4700:4700::1111", None),
        ("8.8.8.8", None),
    ],
)
def test_embedded_ipv4(address, inner):
    got = embedded_ipv4(ipaddress.ip_address(address))
    assert (str(got) if got else None) == inner


def resolving_to(monkeypatch, *addresses):
    calls = []

    def fake(host, port):
        calls.append(host)
        return list(addresses)

    monkeypatch.setattr(webhooks, "resolve", fake)
    return calls


def test_a_name_with_one_private_address_among_public_ones_is_refused(monkeypatch):
    resolving_to(monkeypatch, "8.8.8.8", "2002:a00:1::1")
    with pytest.raises(WebhookUrlError, match="2002:a00:1::1"):
        check_target("https://hook.example/x")


def test_the_target_is_the_checked_address_with_the_name_kept(monkeypatch):
    calls = resolving_to(monkeypatch, "93.184.216.34", "8.8.8.8")
    t = check_target("https://Hook.Example:8443/in?x=1")
    assert calls == ["hook.example"]  # one lookup
    assert str(t.request_url()) == "https://93.184.216.34:8443/in?x=1"
    assert t.host_header() == "hook.example:8443" and t.server_name() == "hook.example"
    resolving_to(monkeypatch, "2606:4700:4700::1111")
    assert (
        str(check_target("http://hook.example/").request_url()) == "http://[2606:4700:4700::1111]/"
    )


def test_allow_list_names_hosts_and_networks(monkeypatch):
    resolving_to(monkeypatch, "100.64.1.2")
    with pytest.raises(WebhookUrlError, match="XGET_WEBHOOK_ALLOW_HOSTS"):
        check_target("http://cgnat.internal/x")
    assert check_target("http://cgnat.internal/x", "100.64.0.0/10").ip == "100.64.1.2"
    # a named host is trusted by name (connected to as usual)
    assert check_target("http://cgnat.internal/x", "cgnat.internal").ip is None
