"""The audit log's Merkle tree against RFC 6962/9162's published vectors, and its proofs for every size 1..64.

The vectors are Certificate Transparency's reference test data (the 8 leaves and roots used by
the CT, Trillian and transparency-dev test suites): an implementation that disagrees with them
proves nothing to any outside verifier.
"""

from __future__ import annotations

import pytest

from pdp.governance.audit.merkle import (
    EMPTY_ROOT,
    MerkleAccumulator,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

CT_LEAVES = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # size 0
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",  # size 8
]
CT_INCLUSION = [  # (leaf index, tree size, audit path)
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
CT_CONSISTENCY = [  # (first size, second size, proof)
    (
        2,
        8,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

CT_LEAF_HASHES = [leaf_hash(leaf) for leaf in CT_LEAVES]
N = 64
LEAVES = [leaf_hash(f"pdp-audit-test-leaf-{i}".encode()) for i in range(N)]
ROOTS = [merkle_root(LEAVES[:n]) for n in range(N + 1)]


def test_the_roots_are_the_published_ct_roots_for_every_size_0_to_8() -> None:
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    for size in range(len(CT_LEAVES) + 1):
        assert merkle_root(CT_LEAF_HASHES[:size]).hex() == CT_ROOTS[size], size


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_inclusion_proofs_are_the_published_ones(index: int, size: int, path: list[str]) -> None:
    assert [h.hex() for h in inclusion_proof(CT_LEAF_HASHES, index, size)] == path
    proof = [bytes.fromhex(h) for h in path]
    assert verify_inclusion(CT_LEAF_HASHES[index], index, size, proof, bytes.fromhex(CT_ROOTS[size]))


@pytest.mark.parametrize(("first", "second", "path"), CT_CONSISTENCY)
def test_consistency_proofs_are_the_published_ones(first: int, second: int, path: list[str]) -> None:
    assert [h.hex() for h in consistency_proof(CT_LEAF_HASHES, first, second)] == path
    proof = [bytes.fromhex(h) for h in path]
    assert verify_consistency(first, second, bytes.fromhex(CT_ROOTS[first]), bytes.fromhex(CT_ROOTS[second]), proof)


def test_leaves_and_nodes_are_domain_separated() -> None:
    left, right = LEAVES[0], LEAVES[1]
    assert merkle_root([left, right]) == node_hash(left, right)
    assert node_hash(left, right) != node_hash(right, left)
    assert leaf_hash(left + right) != node_hash(left, right)


def test_the_accumulator_gives_the_rfc_root_at_every_size() -> None:
    acc = MerkleAccumulator()
    assert acc.root() == EMPTY_ROOT
    for n, leaf in enumerate(LEAVES, start=1):
        acc.append(leaf)
        assert acc.root() == ROOTS[n], n


def test_every_inclusion_proof_verifies_for_every_size_1_to_64_and_not_elsewhere() -> None:
    for size in range(1, N + 1):
        for index in range(size):
            proof = inclusion_proof(LEAVES, index, size)
            assert verify_inclusion(LEAVES[index], index, size, proof, ROOTS[size]), (index, size)
            if size > 1:
                assert not verify_inclusion(LEAVES[index], (index + 1) % size, size, proof, ROOTS[size])
                assert not verify_inclusion(LEAVES[(index + 1) % size], index, size, proof, ROOTS[size])
                assert not verify_inclusion(LEAVES[index], index, size, proof, ROOTS[size - 1])
            if proof:
                flipped = [*proof[:-1], bytes([proof[-1][0] ^ 1]) + proof[-1][1:]]
                assert not verify_inclusion(LEAVES[index], index, size, flipped, ROOTS[size])
                assert not verify_inclusion(LEAVES[index], index, size, proof[:-1], ROOTS[size])
            assert not verify_inclusion(LEAVES[index], index, size, [*proof, LEAVES[0]], ROOTS[size])


def test_every_consistency_proof_verifies_for_all_sizes_up_to_64_and_not_for_other_roots() -> None:
    for second in range(1, N + 1):
        for first in range(0, second + 1):
            proof = consistency_proof(LEAVES, first, second)
            assert verify_consistency(first, second, ROOTS[first], ROOTS[second], proof), (first, second)
            if 0 < first < second:
                assert not verify_consistency(first, second, ROOTS[first - 1], ROOTS[second], proof)
                assert not verify_consistency(first, second, ROOTS[first], ROOTS[second - 1], proof)
                flipped = [bytes([proof[0][0] ^ 0x80]) + proof[0][1:], *proof[1:]]
                assert not verify_consistency(first, second, ROOTS[first], ROOTS[second], flipped)
                assert not verify_consistency(first, second, ROOTS[first], ROOTS[second], proof[:-1])
                assert not verify_consistency(first, second, ROOTS[first], ROOTS[second], [*proof, LEAVES[0]])


def test_verifiers_return_false_on_malformed_input_and_generators_refuse_bad_ranges() -> None:
    proof = inclusion_proof(CT_LEAF_HASHES, 5, 8)
    root8 = bytes.fromhex(CT_ROOTS[8])
    assert not verify_inclusion(b"\x00" * 31, 5, 8, proof, root8)
    assert not verify_inclusion(CT_LEAF_HASHES[5], 8, 8, proof, root8)
    assert not verify_inclusion(CT_LEAF_HASHES[5], -1, 8, proof, root8)
    assert not verify_inclusion(CT_LEAF_HASHES[5], 5, 8, "not a proof", root8)  # type: ignore[arg-type]
    assert not verify_consistency(8, 6, root8, bytes.fromhex(CT_ROOTS[6]), [])
    assert not verify_consistency(6, 8, bytes.fromhex(CT_ROOTS[6]), root8, [])
    assert verify_consistency(4, 4, ROOTS[4], ROOTS[4], [])
    assert not verify_consistency(4, 4, ROOTS[4], ROOTS[5], [])
    assert verify_consistency(0, 8, EMPTY_ROOT, root8, [])
    assert not verify_consistency(0, 8, ROOTS[1], root8, [])
    with pytest.raises(ValueError):
        inclusion_proof(CT_LEAF_HASHES, 8, 8)
    with pytest.raises(ValueError):
        consistency_proof(CT_LEAF_HASHES, 5, 3)
    with pytest.raises(ValueError):
        merkle_root([b"short"])
