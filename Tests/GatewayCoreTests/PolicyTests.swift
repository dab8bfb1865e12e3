import Crypto
import CSC
import Foundation
@testable import GatewayCore
import SwiftASN1
import Testing
import X509

// Policy rules: each matcher, each effect, the combining rule, policy files and their tests.

private let ecdsaSHA256 = "1.2.840.10045.4.3.2"
private let monday10Berlin = ISO8601DateFormatter().date(from: "2026-03-09T10:00:00+01:00")!

private func facts(_ change: (inout OperationFacts) -> Void = { _ in }) -> OperationFacts {
    var f = OperationFacts(tenant: "acme", client: "acme-app", operation: "signatures/signHash", credential: "acme-qes",
                           credentialLabels: ["country": "DE", "tier": "gold"], upstream: "vendor-a",
                           signAlgorithm: ecdsaSHA256, hashAlgorithm: "2.16.840.1.101.3.4.2.1", hashes: 3, numSignatures: 10,
                           scal: "2", signatureQualifier: "eu_eidas_qes", time: monday10Berlin, source: IPAddress("10.1.2.3"),
                           certificate: CertificateFacts(issuer: ["cn": ["Trust QCA"], "o": ["Trust Co"], "c": ["DE"]],
                                                         subject: ["cn": ["Jane Doe"], "o": ["ACME"], "c": ["DE"]],
                                                         policies: ["0.4.0.194112.1.2"], qcStatements: ["0.4.0.1862.1.1"]))
    change(&f)
    return f
}

private func policy(_ yaml: String, name: String = "p") throws -> PolicyDocument {
    let (doc, issues) = ConfigurationLoader.parsePolicy(yaml, file: "policies/\(name).yaml", fileStem: name)
    guard let doc, issues.isEmpty else { throw ConfigurationError(issues) }
    return doc
}

@Suite("Policy matchers")
struct PolicyMatcherTests {
    static let berlin = TimeZone(identifier: "Europe/Berlin")!

    /// (condition, holds for the reference operation, fails for the changed one)
    static let table: [(String, PolicyCondition, @Sendable (inout OperationFacts) -> Void)] = [
        ("tenant", .tenant(["acme"]), { $0.tenant = "globex" }),
        ("client", .client(["acme-app"]), { $0.client = "acme-batch" }),
        ("credential id", .credential(ids: ["acme-qes"], globs: []), { $0.credential = "acme-other" }),
        ("credential glob", .credential(ids: [], globs: [Glob("acme-q*")]), { $0.credential = "acme-rsa" }),
        ("credential labels", .labels(["country": ["DE", "AT"], "tier": ["gold"]]), { $0.credentialLabels["tier"] = "silver" }),
        ("upstream", .upstream(["vendor-a"]), { $0.upstream = "hsm" }),
        ("operation", .operation(["signatures/signHash"]), { $0.operation = "credentials/list" }),
        ("signAlgo", .signAlgo([ecdsaSHA256]), { $0.signAlgorithm = "1.2.840.113549.1.1.11" }),
        ("hashAlgo", .hashAlgo(["2.16.840.1.101.3.4.2.1"]), { $0.hashAlgorithm = "2.16.840.1.101.3.4.2.3" }),
        ("number of hashes", .hashes(1...5), { $0.hashes = 6 }),
        ("numSignatures", .numSignatures(10...10), { $0.numSignatures = 11 }),
        ("SCAL", .scal(["2"]), { $0.scal = "1" }),
        ("signature qualifier", .signatureQualifier(["eu_eidas_qes"]), { $0.signatureQualifier = "eu_eidas_aes" }),
        ("time window in a zone", .time(TimeWindow(days: [1, 2, 3, 4, 5], from: 8 * 60, to: 18 * 60, zone: berlin)),
         { $0.time = ISO8601DateFormatter().date(from: "2026-03-09T18:00:00+01:00")! }),
        ("source CIDR", .source([CIDR("10.0.0.0/8")!]), { $0.source = IPAddress("11.0.0.1") }),
        ("certificate issuer", .issuer(["o": ["Trust Co"], "c": ["DE"]]), { $0.certificate?.issuer["o"] = ["Other CA"] }),
        ("certificate subject", .subject(["cn": ["Jane Doe"]]), { $0.certificate?.subject["cn"] = ["John Roe"] }),
        ("certificate policies", .certificatePolicies(["0.4.0.194112.1.2", "1.2.3"]), { $0.certificate?.policies = ["9.9"] }),
        ("QC statements present", .qcStatements(nil), { $0.certificate?.qcStatements = nil }),
        ("QC statement ids", .qcStatements(["0.4.0.1862.1.1"]), { $0.certificate?.qcStatements = ["0.4.0.1862.1.6"] }),
    ]

    @Test("each matcher holds for a matching operation and fails for one that differs", arguments: table.indices)
    func matcher(_ i: Int) {
        let (name, condition, change) = Self.table[i]
        #expect(condition.holds(facts()), "\(name) should hold")
        #expect(!condition.holds(facts(change)), "\(name) should fail")
        #expect(condition.explain(facts()).hasPrefix("holds"))
    }

    @Test("a condition on a fact the operation does not have does not hold")
    func missingFacts() {
        let list = facts { $0.operation = "credentials/list"; $0.credential = nil; $0.signAlgorithm = nil; $0.certificate = nil }
        #expect(!PolicyCondition.signAlgo([ecdsaSHA256]).holds(list))
        #expect(!PolicyCondition.credential(ids: [], globs: [Glob("*")]).holds(list))
        #expect(!PolicyCondition.qcStatements(nil).holds(list))
        #expect(!PolicyCondition.source([CIDR("0.0.0.0/0")!]).holds(facts { $0.source = nil }))
    }

    @Test("CIDRs match IPv4, IPv6 and IPv4-mapped addresses")
    func cidr() throws {
        let v4 = try #require(CIDR("192.168.1.0/24"))
        #expect(v4.contains(try #require(IPAddress("192.168.1.200"))))
        #expect(!v4.contains(try #require(IPAddress("192.168.2.1"))))
        #expect(v4.contains(try #require(IPAddress("::ffff:192.168.1.7"))))
        let v6 = try #require(CIDR("2001:db8::/32"))
        #expect(v6.contains(try #require(IPAddress("2001:db8:1::5"))))
        #expect(!v6.contains(try #require(IPAddress("2001:db9::1"))))
        #expect(try #require(CIDR("::1")).contains(try #require(IPAddress("[::1]"))))
        #expect(CIDR("10.0.0.0/33") == nil && CIDR("nonsense") == nil && IPAddress("1.2.3.256") == nil)
    }

    @Test("globs match whole ids with * and ?")
    func glob() {
        #expect(Glob("acme-*").matches("acme-qes"))
        #expect(Glob("*-qes").matches("acme-qes"))
        #expect(Glob("a?me-*").matches("acme-x"))
        #expect(!Glob("acme-*").matches("globex-acme-x"))
        #expect(!Glob("acme").matches("acme-qes"))
    }

    @Test("time windows follow the zone's daylight saving time and may run over midnight")
    func timeWindows() throws {
        let window = TimeWindow(days: Set(0...6), from: 9 * 60, to: 17 * 60, zone: Self.berlin)
        let iso = ISO8601DateFormatter()
        // 08:30 UTC is 09:30 in Berlin in winter (CET) and 10:30 in summer (CEST).
        #expect(window.contains(try #require(iso.date(from: "2026-01-15T08:30:00Z"))))
        #expect(window.contains(try #require(iso.date(from: "2026-07-15T07:30:00Z"))))
        #expect(!window.contains(try #require(iso.date(from: "2026-07-15T06:30:00Z"))))
        let night = TimeWindow(days: Set(0...6), from: 22 * 60, to: 6 * 60, zone: Self.berlin)
        #expect(night.contains(try #require(iso.date(from: "2026-01-15T23:30:00Z"))))
        #expect(!night.contains(try #require(iso.date(from: "2026-01-15T12:00:00Z"))))
    }

    @Test("signer certificate facts are read from DER: issuer, subject, policy OIDs, QC statements")
    func certificateFacts() throws {
        let key = P256.Signing.PrivateKey()
        let issuer = try DistinguishedName {
            CountryName("DE")
            OrganizationName("Trust Co")
            CommonName("Trust QCA")
        }
        let subject = try DistinguishedName {
            CountryName("DE")
            OrganizationName("ACME")
            CommonName("Jane Doe")
        }
        func sequenceOfOIDs(_ oids: [ASN1ObjectIdentifier]) throws -> ArraySlice<UInt8> {
            var s = DER.Serializer()
            try s.appendConstructedNode(identifier: .sequence) { s in
                for oid in oids { try s.appendConstructedNode(identifier: .sequence) { s in try s.serialize(oid) } }
            }
            return s.serializedBytes[...]
        }
        let extensions = try Certificate.Extensions([
            Certificate.Extension(oid: [2, 5, 29, 32], critical: false, value: try sequenceOfOIDs([[0, 4, 0, 194112, 1, 2]])),
            Certificate.Extension(oid: [1, 3, 6, 1, 5, 5, 7, 1, 3], critical: false,
                                  value: try sequenceOfOIDs([[0, 4, 0, 1862, 1, 1], [0, 4, 0, 1862, 1, 6]])),
        ])
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: Date(),
            notValidAfter: Date().addingTimeInterval(3600), issuer: issuer, subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions, issuerPrivateKey: .init(key))
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        let parsed = try #require(CertificateFacts.parse(der: serializer.serializedBytes))
        #expect(parsed.issuer["o"] == ["Trust Co"] && parsed.issuer["cn"] == ["Trust QCA"])
        #expect(parsed.subject["cn"] == ["Jane Doe"] && parsed.subject["c"] == ["DE"])
        #expect(parsed.policies == ["0.4.0.194112.1.2"])
        #expect(parsed.qcStatements == ["0.4.0.1862.1.1", "0.4.0.1862.1.6"])
        #expect(CertificateFacts.parse(der: [0x30, 0x00]) == nil)
        let cache = CertificateFactsCache()
        #expect(cache.facts(base64: Data(serializer.serializedBytes).base64EncodedString()) == parsed)
    }
}

@Suite("Policy effects and the combining rule")
struct PolicyCombiningTests {
    @Test("deny overrides allow, whatever the order of files and rules")
    func denyOverrides() throws {
        let allow = try policy("default: allow\nrules:\n  - {id: all, effect: allow}\n", name: "a")
        let deny = try policy("default: allow\nrules:\n  - {id: no, when: {hashes: {min: 2}}, effect: deny, reason: Too many hashes}\n",
                              name: "b")
        for docs in [[allow, deny], [deny, allow]] {
            let d = PolicyIndex.decide(facts(), documents: docs)
            #expect(d.denial == .init(rule: "b/no", reason: "Too many hashes"))
        }
        #expect(PolicyIndex.decide(facts { $0.hashes = 1 }, documents: [allow, deny]).allowedBy == "a/all")
    }

    @Test("an explicit allow beats a default deny; without one the default deny decides")
    func defaults() throws {
        let allowList = try policy("default: deny\nrules:\n  - {id: office, when: {source: 10.0.0.0/8}, effect: allow}\n", name: "net")
        #expect(PolicyIndex.decide(facts(), documents: [allowList]).isAllowed)
        let outside = PolicyIndex.decide(facts { $0.source = IPAddress("192.0.2.1") }, documents: [allowList])
        #expect(outside.denial?.rule == "net (default)")
        #expect(outside.denial?.reason.contains("denies by default") == true)
        let open = try policy("default: allow\nrules: []\n", name: "open")
        // One default deny among the applicable files is enough.
        #expect(!PolicyIndex.decide(facts { $0.source = nil }, documents: [open, allowList]).isAllowed)
        #expect(PolicyIndex.decide(facts(), documents: [open]).isAllowed)
        #expect(PolicyIndex.decide(facts(), documents: []) == .allowed)
    }

    @Test("limit rules collect their limits for an allowed operation, and none for a denied one")
    func limits() throws {
        let doc = try policy("""
            default: allow
            rules:
              - {id: rate, when: {operation: signatures/signHash}, effect: limit, limit: {scope: credential, rate: 10, period: 1h, burst: 5}}
              - {id: calls, effect: limit, limit: {scope: client, unit: requests, rate: 2, period: 1s}}
              - {id: hsm, when: {upstream: hsm}, effect: limit, limit: {scope: upstream, concurrency: 4}}
            """)
        let d = PolicyIndex.decide(facts(), documents: [doc])
        #expect(d.limits.map(\.name) == ["p/rate", "p/calls"])
        #expect(d.limits[0].kind == .rate(rate: 10, period: 3600, burst: 5, unit: .signatures))
        #expect(d.limits[1].kind == .rate(rate: 2, period: 1, burst: 2, unit: .requests))
        #expect(PolicyIndex.decide(facts { $0.upstream = "hsm"; $0.operation = "credentials/info" }, documents: [doc]).limits.map(\.name)
                == ["p/calls", "p/hsm"])
        let denied = try policy("default: deny\nrules:\n  - {id: rate, effect: limit, limit: {scope: tenant, rate: 1}}\n")
        #expect(PolicyIndex.decide(facts(), documents: [denied]).limits.isEmpty)
    }

    @Test("the index applies tenant, client and credential attachments, each file once")
    func attachments() throws {
        let tenantWide = try policy("default: allow\nrules:\n  - {id: t, effect: limit, limit: {scope: tenant, rate: 1}}\n", name: "tw")
        let qesOnly = try policy("""
            default: allow
            rules:
              - {id: q, when: {scal: 1}, effect: deny, reason: SCAL 2 only}
            """, name: "qes")
        var acme = TenantConfiguration(id: "acme", displayName: "ACME",
                                       clients: [ClientConfiguration(id: "acme-app", name: "app", secretHash: Secrets.appHash,
                                                                     scopes: ["service"], policies: ["tw"])],
                                       credentials: [CredentialRoute(id: "acme-qes", upstream: "vendor-a", upstreamCredentialID: "q",
                                                                     policies: ["qes"])],
                                       timestampUpstream: nil, timestampClientData: nil)
        acme.policies = ["tw"]
        let index = PolicyIndex(documents: [tenantWide, qesOnly], tenants: [acme])
        #expect(index.decide(facts()).limits.map(\.name) == ["tw/t"])
        #expect(index.decide(facts { $0.scal = "1" }).denial?.reason == "SCAL 2 only")
        #expect(index.decide(facts { $0.scal = "1"; $0.credential = "acme-other" }).isAllowed)
        #expect(index.decide(facts { $0.tenant = "globex" }) == .allowed)
        let explained = index.explain(facts { $0.scal = "1" }).joined(separator: "\n")
        #expect(explained.contains("rule q (line 3): MATCHED -> deny"))
        #expect(explained.contains("holds: SCAL 1 in [1]"))
        #expect(explained.contains("decision: DENY by qes/q: SCAL 2 only"))
    }
}

@Suite("Policy files")
struct PolicyFileTests {
    @Test("mistakes are reported with file and line")
    func errors() {
        let yaml = """
            policy: p
            default: maybe
            rules:
              - id: r1
                when:
                  source: 10.0.0.0/40
                  operation: signatures/sign
                  time: {days: [mon], zone: Mars/Olympus}
                  colour: blue
                effect: deny
              - id: r2
                effect: limit
                limit: {scope: galaxy, rate: 1}
            """
        let (_, issues) = ConfigurationLoader.parsePolicy(yaml, file: "policies/p.yaml", fileStem: "p")
        func line(_ text: String) -> Int? { issues.first { $0.message.contains(text) }?.line }
        #expect(line("'default' must be allow or deny") == 2)
        #expect(line("is not an address or CIDR") == 6)
        #expect(line("unknown operation 'signatures/sign'") == 7)
        #expect(line("unknown time zone 'Mars/Olympus'") == 8)
        #expect(line("unknown key 'rules[0].when.colour'") == 9)
        #expect(line("missing required key 'rules[0].reason'") != nil)
        #expect(line("must be one of tenant, client, credential, upstream") == 13)
        #expect(issues.allSatisfy { $0.file == "policies/p.yaml" })
    }

    @Test("a tenant naming an undefined policy is refused by the loader, with the tenant file")
    func undefinedPolicy() throws {
        var folder = try ConfigFolder()
        folder.tenants["acme.yaml"] = ConfigFolder.validAcme + "\npolicies: [nowhere]\n"
        try folder.expectIssue("policy 'nowhere' is not defined", file: folder.tenantFile("acme.yaml"), line: nil)
        folder.policies["nowhere.yaml"] = "default: allow\nrules:\n  - {id: x, effect: allow}\n"
        #expect(try folder.load().policies.map(\.name) == ["nowhere"])
    }

    @Test("policy tests pass when the file decides as expected, and a wrong expectation is caught")
    func testCases() throws {
        let doc = try policy("""
            default: allow
            rules:
              - {id: no-sha1, when: {signAlgo: 1.2.840.113549.1.1.5}, effect: deny, reason: SHA-1 is not allowed}
              - {id: rate, effect: limit, limit: {scope: credential, rate: 10}}
            tests:
              - name: right
                operation: {operation: signatures/signHash, signAlgo: 1.2.840.113549.1.1.5}
                expect: deny
                reason: SHA-1
              - name: wrong decision
                operation: {operation: signatures/signHash, signAlgo: 1.2.840.10045.4.3.2}
                expect: deny
              - name: wrong reason
                operation: {operation: signatures/signHash, signAlgo: 1.2.840.113549.1.1.5}
                expect: deny
                reason: MD5
              - name: wrong limits
                operation: {operation: signatures/signHash, signAlgo: 1.2.840.10045.4.3.2}
                expect: allow
                limits: [rate, other]
            """)
        let results = doc.tests.map { ($0.name, doc.check($0)) }
        #expect(results[0].1.isEmpty)
        #expect(results[1].1 == ["expected deny, got allow"])
        #expect(results[2].1.first?.contains("expected a denial reason containing \"MD5\"") == true)
        #expect(results[3].1.first?.contains("expected limits [p/other, p/rate], got [p/rate]") == true)
    }

    @Test("the shipped example policies load and pass their own tests")
    func shippedPolicies() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../policies").standardized.path
        let (docs, issues) = ConfigurationLoader.loadPolicies(directory: dir)
        #expect(issues.isEmpty, "\(issues)")
        #expect(docs.count >= 2)
        for doc in docs {
            #expect(!doc.tests.isEmpty, "\(doc.name) has no tests")
            for test in doc.tests { #expect(doc.check(test).isEmpty, "\(doc.name): \(test.name)") }
        }
    }
}
