import CSC
import Foundation
@testable import GatewayCore
import Testing

// Invariant 1 (DESIGN.md): every lookup is keyed by tenant; another tenant's credential id is
// simply unknown, with the same error as an id that exists nowhere.

private func tenant(_ id: String, clients: [String], credentials: [(String, String, String)]) -> TenantConfiguration {
    TenantConfiguration(
        id: id, displayName: id,
        clients: clients.map { ClientConfiguration(id: $0, name: $0, secretHash: Secrets.appHash, scopes: ["service"]) },
        credentials: credentials.map { CredentialRoute(id: $0.0, upstream: $0.1, upstreamCredentialID: $0.2, description: nil) },
        timestampUpstream: nil, timestampClientData: nil)
}

@Suite("TenantDirectory")
struct TenantDirectoryTests {
    let directory = TenantDirectory([
        tenant("acme", clients: ["acme-app", "acme-batch"],
               credentials: [("acme-rsa", "vendor-a", "a/rsa"), ("shared-name", "vendor-a", "a/ec")]),
        tenant("globex", clients: ["globex-app"],
               credentials: [("globex-rsa", "vendor-b", "b/rsa"), ("shared-name", "vendor-b", "b/ec")]),
    ])

    @Test("a tenant resolves its own credential ids to its own routes")
    func ownRoutes() throws {
        #expect(try directory.route(tenant: "acme", credentialID: "acme-rsa").upstreamCredentialID == "a/rsa")
        #expect(try directory.route(tenant: "acme", credentialID: "shared-name").upstreamCredentialID == "a/ec")
        #expect(try directory.route(tenant: "globex", credentialID: "shared-name").upstreamCredentialID == "b/ec")
    }

    @Test("another tenant's credential id reads exactly like one that does not exist", arguments: [
        ("acme", "globex-rsa"), ("globex", "acme-rsa"), ("acme", "no-such-credential"), ("nobody", "acme-rsa"),
        ("acme", ""), ("ACME", "acme-rsa"),
    ] as [(String, String)])
    func otherTenantUnknown(_ tenantID: String, _ credentialID: String) {
        #expect(throws: CSCError.invalidRequest("Invalid parameter credentialID")) {
            try directory.route(tenant: tenantID, credentialID: credentialID)
        }
    }

    @Test("credentials of a tenant are listed in configuration order, and only its own")
    func credentialsOf() {
        #expect(directory.credentials(of: "acme").map(\.id) == ["acme-rsa", "shared-name"])
        #expect(directory.credentials(of: "globex").map(\.id) == ["globex-rsa", "shared-name"])
        #expect(directory.credentials(of: "nobody").isEmpty)
    }

    @Test("a client id leads to its tenant")
    func clientLookup() {
        #expect(directory.client("acme-batch")?.tenantID == "acme")
        #expect(directory.client("globex-app")?.tenantID == "globex")
        #expect(directory.client("globex-app")?.client.id == "globex-app")
        #expect(directory.client("unknown") == nil)
        #expect(directory.client("") == nil)
    }
}

// CSC-API.md §10.1: pyHanko looks for the exact PKCS#1 v1.5 OID it will use; an upstream that
// lists only rsaEncryption can serve them given hashAlgo, so the gateway lists them too.

private let rsa = SignatureAlgorithm.rsaEncryption
private func info(_ algos: [String]) -> CredentialInfo {
    CredentialInfo(key: KeyInfo(status: .enabled, algorithms: algos, length: 2048), cert: CertInfo(), authMode: .implicit)
}

@Suite("CredentialCatalog interoperability fixes")
struct CredentialCatalogTests {
    @Test("an RSA key listing only rsaEncryption gains sha256/384/512WithRSA")
    func rsaGainsImpliedOIDs() {
        let fixed = CredentialCatalog.withInteropFixes(info([rsa]))
        #expect(fixed.key.algorithms == [rsa, SignatureAlgorithm.sha256WithRSA, SignatureAlgorithm.sha384WithRSA,
                                         SignatureAlgorithm.sha512WithRSA])
    }

    @Test("OIDs already listed are not repeated; PSS is kept")
    func noDuplicates() {
        let fixed = CredentialCatalog.withInteropFixes(info([SignatureAlgorithm.sha256WithRSA, rsa, SignatureAlgorithm.rsassaPSS]))
        #expect(fixed.key.algorithms.count == Set(fixed.key.algorithms).count)
        #expect(Set(fixed.key.algorithms) == [rsa, SignatureAlgorithm.rsassaPSS, SignatureAlgorithm.sha256WithRSA,
                                              SignatureAlgorithm.sha384WithRSA, SignatureAlgorithm.sha512WithRSA])
    }

    @Test("an EC key is unchanged", arguments: [
        [SignatureAlgorithm.ecdsaWithSHA256],
        [SignatureAlgorithm.ecPublicKey, SignatureAlgorithm.ecdsaWithSHA256, SignatureAlgorithm.ecdsaWithSHA384],
        [SignatureAlgorithm.ecdsaPlainSHA256],
    ])
    func ecUnchanged(_ algos: [String]) {
        let fixed = CredentialCatalog.withInteropFixes(info(algos))
        #expect(fixed.key.algorithms == algos)
        #expect(fixed.key == info(algos).key)
    }

    @Test("an RSA key already listing a specific OID but not rsaEncryption gains nothing")
    func noRawRSANoAdditions() {
        let algos = [SignatureAlgorithm.sha256WithRSA]
        #expect(CredentialCatalog.withInteropFixes(info(algos)).key.algorithms == algos)
    }

    @Test("the order is stable whatever order the upstream lists them in")
    func stableOrder() {
        let a = CredentialCatalog.withInteropFixes(info([rsa, SignatureAlgorithm.rsassaPSS]))
        let b = CredentialCatalog.withInteropFixes(info([SignatureAlgorithm.rsassaPSS, rsa]))
        #expect(a.key.algorithms == b.key.algorithms)
        #expect(CredentialCatalog.withInteropFixes(a) == a)
    }

    @Test("the rest of the description is untouched")
    func restUntouched() {
        var original = info([rsa])
        original.multisign = 7
        original.scal = .two
        original.description = "d"
        var fixed = CredentialCatalog.withInteropFixes(original)
        fixed.key.algorithms = original.key.algorithms
        #expect(fixed == original)
    }
}

@Suite("UpstreamCredential.upstreamAlgorithm")
struct UpstreamAlgorithmTests {
    @Test("sha*WithRSA becomes rsaEncryption + hashAlgo when the upstream lacks it natively", arguments: [
        (SignatureAlgorithm.sha256WithRSA, HashAlgorithm.sha256),
        (SignatureAlgorithm.sha384WithRSA, .sha384),
        (SignatureAlgorithm.sha512WithRSA, .sha512),
    ] as [(String, HashAlgorithm)])
    func mappedWhenMissing(_ signAlgo: String, _ hash: HashAlgorithm) {
        let c = UpstreamCredential(info: CredentialCatalog.withInteropFixes(info([rsa])), nativeAlgorithms: [rsa])
        let mapped = c.upstreamAlgorithm(for: signAlgo, hash: hash)
        #expect(mapped.signAlgo == rsa)
        #expect(mapped.hashAlgo == hash.oid)
    }

    @Test("an OID the upstream lists natively is sent as it is")
    func nativeKept() {
        let c = UpstreamCredential(info: info([rsa, SignatureAlgorithm.sha256WithRSA]),
                                   nativeAlgorithms: [rsa, SignatureAlgorithm.sha256WithRSA])
        let mapped = c.upstreamAlgorithm(for: SignatureAlgorithm.sha256WithRSA, hash: .sha256)
        #expect(mapped.signAlgo == SignatureAlgorithm.sha256WithRSA)
    }

    @Test("raw RSA, PSS and ECDSA pass through with the client's hash")
    func passThrough() {
        let c = UpstreamCredential(info: info([rsa, SignatureAlgorithm.rsassaPSS]), nativeAlgorithms: [rsa, SignatureAlgorithm.rsassaPSS])
        let raw = c.upstreamAlgorithm(for: rsa, hash: .sha384)
        #expect(raw.signAlgo == rsa)
        #expect(raw.hashAlgo == HashAlgorithm.sha384.oid)
        let pss = c.upstreamAlgorithm(for: SignatureAlgorithm.rsassaPSS, hash: .sha256)
        #expect(pss.signAlgo == SignatureAlgorithm.rsassaPSS)
        #expect(pss.hashAlgo == HashAlgorithm.sha256.oid)
        let ec = UpstreamCredential(info: info([SignatureAlgorithm.ecdsaWithSHA256]),
                                    nativeAlgorithms: [SignatureAlgorithm.ecdsaWithSHA256])
        #expect(ec.upstreamAlgorithm(for: SignatureAlgorithm.ecdsaWithSHA256, hash: .sha256).signAlgo
            == SignatureAlgorithm.ecdsaWithSHA256)
    }

    @Test("without rsaEncryption upstream, sha256WithRSA is not rewritten")
    func noRawRSAUpstream() {
        let c = UpstreamCredential(info: info([SignatureAlgorithm.ecdsaWithSHA256]),
                                   nativeAlgorithms: [SignatureAlgorithm.ecdsaWithSHA256])
        #expect(c.upstreamAlgorithm(for: SignatureAlgorithm.sha256WithRSA, hash: .sha256).signAlgo
            == SignatureAlgorithm.sha256WithRSA)
    }
}
