import AsyncHTTPClient
import Crypto
import Foundation
import GatewayCore
import Logging
@testable import Revocation
import SwiftASN1
import Synchronization
import Testing
import X509

// Issue 4, the parts that need no network: verdict cache and single flight, evidence kept
// once, failure modes, the checks made before any responder is asked, RFC 5019 GET URLs, and
// reading thisUpdate/nextUpdate/status from a response.

final class TestClock: Sendable {
    private let current = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
    var now: Date { current.withLock { $0 } }
    func advance(_ s: Double) { current.withLock { $0 = $0.addingTimeInterval(s) } }
}

final class EvaluationCounter: Sendable {
    private let n = Mutex(0)
    var count: Int { n.withLock { $0 } }
    func tick() { n.withLock { $0 += 1 } }
}

final class MemoryEvidence: EvidenceStore {
    let stored = Mutex([String: Data]())
    let failing: Bool
    init(failing: Bool = false) { self.failing = failing }
    func storeEvidence(_ der: Data) async throws -> String {
        if failing { throw CancellationError() }
        let address = EvidenceAddress.of(Array(der))
        stored.withLock { $0[address] = der }
        return address
    }
    func evidence(address: String) async throws -> Data? { stored.withLock { $0[address] } }
}

/// No test here reaches the network; the shared client is never shut down.
enum SignerHTTP {
    static func client() -> HTTPClient { HTTPClient.shared }
    static func shutdown(_ client: HTTPClient) {}
}

let context = OperationContext(requestID: "test", logger: Logger(label: "test"))
let hardPolicy = SignerCertificatePolicy(failureMode: .hard, keyUsage: .digitalSignature, trustAnchors: [])
let softPolicy = SignerCertificatePolicy(failureMode: .soft, keyUsage: .digitalSignature, trustAnchors: [])

func subject(_ leaf: String = "leaf-A", policy: SignerCertificatePolicy = hardPolicy) -> SignerCertificateSubject {
    SignerCertificateSubject(upstream: "vendor-a", credentialID: "acme-qes", chain: [leaf], policy: policy)
}

@Suite("Verdict cache")
struct VerdictCacheTests {
    @Test("a good verdict is reused until its validUntil, then evaluated again")
    func reuseUntilExpiry() async {
        let clock = TestClock(), counter = EvaluationCounter()
        let checker = OCSPChecker(evidence: nil, now: { clock.now }) { _, now in
            counter.tick()
            var e = SignerCertificateEvaluation(verdict: .init(status: .good, detail: "good", validUntil: now.addingTimeInterval(600)))
            e.responseDER = [0x30, 0x03, 0x0a, 0x01, 0x00]
            return e
        }
        for _ in 0..<100 { #expect(await checker.verdict(for: subject(), context).status == .good) }
        #expect(counter.count == 1)
        clock.advance(599)
        _ = await checker.verdict(for: subject(), context)
        #expect(counter.count == 1)
        clock.advance(2)  // past nextUpdate
        _ = await checker.verdict(for: subject(), context)
        #expect(counter.count == 2)
    }

    @Test("concurrent requests for one certificate share one evaluation")
    func singleFlight() async {
        let counter = EvaluationCounter()
        let checker = OCSPChecker(evidence: nil) { _, now in
            counter.tick()
            try? await Task.sleep(for: .milliseconds(200))
            return SignerCertificateEvaluation(verdict: .init(status: .good, detail: "", validUntil: now.addingTimeInterval(60)))
        }
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<50 { group.addTask { _ = await checker.verdict(for: subject(), context) } }
        }
        #expect(counter.count == 1)
    }

    @Test("another certificate or another policy is another verdict")
    func keyedByCertificateAndPolicy() async {
        let counter = EvaluationCounter()
        let checker = OCSPChecker(evidence: nil) { s, now in
            counter.tick()
            let soft = s.policy.failureMode == .soft
            return SignerCertificateEvaluation(verdict: .init(status: .unavailable, detail: "down", softFailed: soft,
                                                              validUntil: now.addingTimeInterval(30)))
        }
        #expect(await checker.verdict(for: subject("A"), context).passes == false)
        #expect(await checker.verdict(for: subject("A", policy: softPolicy), context).passes == true)
        _ = await checker.verdict(for: subject("B"), context)
        #expect(counter.count == 3)
    }

    @Test("the deciding response is stored once, and the verdict names its address")
    func evidenceStored() async throws {
        let store = MemoryEvidence(), clock = TestClock()
        let der: [UInt8] = [0x30, 0x03, 0x0a, 0x01, 0x00]
        let checker = OCSPChecker(evidence: store, now: { clock.now }) { _, now in
            var e = SignerCertificateEvaluation(verdict: .init(status: .good, detail: "", validUntil: now.addingTimeInterval(10)))
            e.responseDER = der
            return e
        }
        let first = await checker.verdict(for: subject(), context)
        clock.advance(11)
        let second = await checker.verdict(for: subject(), context)
        let expected = Data(SHA256.hash(data: der)).map { String(format: "%02x", $0) }.joined()
        #expect(first.evidence == expected && second.evidence == expected)
        #expect(store.stored.withLock { $0.count } == 1)
        #expect(try await store.evidence(address: expected) == Data(der))
    }

    @Test("nothing is signed on evidence that could not be kept")
    func evidenceFailureRefuses() async {
        let checker = OCSPChecker(evidence: MemoryEvidence(failing: true)) { _, now in
            var e = SignerCertificateEvaluation(verdict: .init(status: .good, detail: "", validUntil: now.addingTimeInterval(60)))
            e.responseDER = [1, 2, 3]
            return e
        }
        let v = await checker.verdict(for: subject(), context)
        #expect(v.status == .unavailable && !v.passes)
    }
}

@Suite("Evaluation before any responder")
struct EvaluationTests {
    static let caKey = P256.Signing.PrivateKey()
    static let caName = try! DistinguishedName { CommonName("Test CA"); CountryName("BE") }
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    static func leaf(from: Date = t0.addingTimeInterval(-86400), to: Date = t0.addingTimeInterval(86400),
                     usage: KeyUsage = KeyUsage(digitalSignature: true)) throws -> String {
        let key = P256.Signing.PrivateKey()
        let cert = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: from, notValidAfter: to,
            issuer: caName, subject: try DistinguishedName { CommonName("Signer") }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions { Critical(usage) },
            issuerPrivateKey: .init(caKey))
        var s = DER.Serializer()
        try s.serialize(cert)
        return Data(s.serializedBytes).base64EncodedString()
    }

    func evaluate(_ leaf: String, policy: SignerCertificatePolicy = hardPolicy, anchors: [String] = []) async throws
        -> SignerCertificateVerdict {
        let client = SignerHTTP.client()
        defer { SignerHTTP.shutdown(client) }
        var settings = OCSPSettings()
        settings.retryAfter = 30
        let evaluator = OCSPEvaluator(settings: settings, anchors: try TrustAnchors(files: []), client: client)
        var p = policy
        p.trustAnchors = anchors
        return await evaluator.evaluate(subject(leaf, policy: p), now: Self.t0).verdict
    }

    @Test("expired and not-yet-valid certificates are refused whatever the failure mode")
    func validity() async throws {
        let expired = try await evaluate(try Self.leaf(to: Self.t0.addingTimeInterval(-1)), policy: softPolicy)
        #expect(expired.status == .expired && !expired.passes && expired.certificateStatus == .expired)
        let early = try await evaluate(try Self.leaf(from: Self.t0.addingTimeInterval(60)), policy: softPolicy)
        #expect(early.status == .notYetValid && !early.passes)
    }

    @Test("key usage must allow signing; nonRepudiation when the policy asks for it")
    func keyUsage() async throws {
        let certSignOnly = try await evaluate(try Self.leaf(usage: KeyUsage(keyCertSign: true)))
        #expect(certSignOnly.status == .unfitForSigning)
        var qes = hardPolicy
        qes.keyUsage = .nonRepudiation
        let digitalOnly = try await evaluate(try Self.leaf(), policy: qes)
        #expect(digitalOnly.status == .unfitForSigning && digitalOnly.detail.contains("nonRepudiation"))
    }

    @Test("no anchors, or no chain to them, is untrusted")
    func untrusted() async throws {
        #expect(try await evaluate(try Self.leaf()).status == .untrusted)
        #expect(try await evaluate("not base64!").status == .untrusted)
    }

    @Test("a certificate without a responder fails hard or soft as configured")
    func noResponder() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cscgate-rev-\(UUID().uuidString).pem")
        let ca = try Certificate(version: .v3, serialNumber: .init(), publicKey: .init(Self.caKey.publicKey),
                                 notValidBefore: Self.t0.addingTimeInterval(-86400 * 10), notValidAfter: Self.t0.addingTimeInterval(86400 * 10),
                                 issuer: Self.caName, subject: Self.caName, signatureAlgorithm: .ecdsaWithSHA256,
                                 extensions: try Certificate.Extensions { Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil)) },
                                 issuerPrivateKey: .init(Self.caKey))
        try ca.serializeAsPEM().pemString.write(to: dir, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: dir) }
        let client = SignerHTTP.client()
        defer { SignerHTTP.shutdown(client) }
        let evaluator = OCSPEvaluator(settings: OCSPSettings(), anchors: try TrustAnchors(files: [dir.path]), client: client)
        let leaf = try Self.leaf()
        var hard = hardPolicy, soft = softPolicy
        hard.trustAnchors = [dir.path]; soft.trustAnchors = [dir.path]
        let h = await evaluator.evaluate(subject(leaf, policy: hard), now: Self.t0).verdict
        let s = await evaluator.evaluate(subject(leaf, policy: soft), now: Self.t0).verdict
        #expect(h.status == .unavailable && !h.passes && h.detail.contains("no OCSP responder"))
        #expect(s.status == .unavailable && s.passes && s.softFailed)
    }

    @Test("a reload reads the trust anchors a changed tenant file names; an unreadable one refuses it")
    func anchorsReload() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cscgate-anchors-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("tenants"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let now = Date()
        let ca = try Certificate(version: .v3, serialNumber: .init(), publicKey: .init(Self.caKey.publicKey),
                                 notValidBefore: now.addingTimeInterval(-86400), notValidAfter: now.addingTimeInterval(86400),
                                 issuer: Self.caName, subject: Self.caName, signatureAlgorithm: .ecdsaWithSHA256,
                                 extensions: try Certificate.Extensions { Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil)) },
                                 issuerPrivateKey: .init(Self.caKey))
        let anchorFile = dir.appendingPathComponent("acme-ca.pem").path
        try ca.serializeAsPEM().pemString.write(toFile: anchorFile, atomically: true, encoding: .utf8)
        try """
            listen: {host: 127.0.0.1, port: 8080}
            upstreams:
              - {name: vendor-a, baseURL: "http://127.0.0.1:9", version: v1}
            ocsp: {enabled: true, failureMode: hard}
            """.write(to: dir.appendingPathComponent("gateway.yaml"), atomically: true, encoding: .utf8)
        let hash = try SecretHash.make(secret: "anchors-test-secret", logN: 10).encoded
        func writeTenant(anchors: Bool) throws {
            try """
                tenant: acme
                clients:
                  - {id: acme-app, secretHash: "\(hash)"}
                credentials:
                  - {id: acme-ec, upstream: vendor-a, upstreamCredentialID: a/ec}
                \(anchors ? "ocsp: {trustAnchors: [\"\(anchorFile)\"]}" : "")
                """.write(to: dir.appendingPathComponent("tenants/acme.yaml"), atomically: true, encoding: .utf8)
        }
        let gatewayFile = dir.appendingPathComponent("gateway.yaml").path
        // Started while the tenant had no anchors of its own (`check` refuses that while OCSP is
        // on, so the first load is built by hand from the second).
        try writeTenant(anchors: true)
        let withAnchors = try ConfigurationLoader.load(gatewayFile: gatewayFile)
        var started = withAnchors
        started.tenants[0].signerCertificates.trustAnchors = nil
        let client = SignerHTTP.client()
        defer { SignerHTTP.shutdown(client) }
        let evaluator = OCSPEvaluator(settings: OCSPSettings(), anchors: try TrustAnchors(configuration: started), client: client)
        let checker = OCSPChecker(evaluator: evaluator, evidence: nil)
        let tenant = withAnchors.tenants[0]
        let policy = SignerCertificatePolicy.resolve(for: tenant.credentials[0], tenant: tenant, gateway: withAnchors.gateway)
        #expect(policy.trustAnchors == [anchorFile])
        let leaf = try Self.leaf(from: now.addingTimeInterval(-3600), to: now.addingTimeInterval(3600))
        let before = await checker.verdict(for: subject(leaf, policy: policy), context)
        #expect(before.status == .untrusted, "\(before.detail)")

        // After the reload the chain is trusted; with no responder in the certificate it then
        // hard-fails on OCSP instead.
        try checker.reload(withAnchors)
        let after = await checker.verdict(for: subject(leaf, policy: policy), context)
        #expect(after.status == .unavailable && after.detail.contains("no OCSP responder"), "\(after.detail)")

        // An anchor file that cannot be read refuses the reload; the anchors in use stay.
        try FileManager.default.removeItem(atPath: anchorFile)
        #expect(throws: (any Error).self) { try checker.reload(withAnchors) }
        #expect(evaluator.anchors.certificates([anchorFile]).count == 1)
    }
}

@Suite("OCSP transport and response")
struct OCSPWireTests {
    @Test("RFC 5019 GET: base64 URL-encoded after the responder URL, only when it fits")
    func getURL() {
        let request: [UInt8] = [0xfb, 0xff, 0xfe]  // base64 "+//+"
        #expect(HTTPOCSPRequester.getURL("http://r.example/ocsp", request: request, maxBytes: 255)
            == "http://r.example/ocsp/%2B%2F%2F%2B")
        #expect(HTTPOCSPRequester.getURL("http://r.example/", request: request, maxBytes: 255) == "http://r.example/%2B%2F%2F%2B")
        #expect(HTTPOCSPRequester.getURL("http://r.example", request: [UInt8](repeating: 1, count: 300), maxBytes: 255) == nil)
    }

    static let good = "MIIBOwoBAKCCATQwggEwBgkrBgEFBQcwAQEEggEhMIIBHTCBxaEkMCIxEzARBgNVBAMMCkZpeHR1cmUgQ0ExCzAJBgNVBAYTAkJFGA8yMDI2MTEyOTIzNDIyMlowZzBlMD0wCQYFKw4DAhoFAAQU15Vmo1lK7FrWd7EvIUGe3IZ+F88EFHEdXnjlfPHFap8CYNkUoXR2hpnOAgQAihssgAAYDzIwMjYwMzAxMTIwMDAwWqARGA8yMDI2MDMwMTEyMTAwMFqhIzAhMB8GCSsGAQUFBzABAgQSBBABAQEBAQEBAQEBAQEBAQEBMAoGCCqGSM49BAMCA0cAMEQCIAexNR+X+mH8wosQa7K+fvORNjwx4Ssz5h1Vl324krPHAiBD2qFDRFFDWPWn4hF0blGgIu03WNApIxT9/Z4/L9gnCg=="
    static let revoked = "MIIBUwoBAKCCAUwwggFIBgkrBgEFBQcwAQEEggE5MIIBNTCB26EkMCIxEzARBgNVBAMMCkZpeHR1cmUgQ0ExCzAJBgNVBAYTAkJFGA8yMDI2MTEyOTIzNDIyMlowfTB7MD0wCQYFKw4DAhoFAAQU15Vmo1lK7FrWd7EvIUGe3IZ+F88EFHEdXnjlfPHFap8CYNkUoXR2hpnOAgQAihssoRYYDzIwMjUwNjAxMDAwMDAwWqADCgEBGA8yMDI2MDMwMTEyMDAwMFqgERgPMjAyNjAzMDExMjEwMDBaoSMwITAfBgkrBgEFBQcwAQIEEgQQAQEBAQEBAQEBAQEBAQEBATAKBggqhkjOPQQDAgNJADBGAiEAlh4weTce/hP/dHYwgnPBTQBvPc8Nlbu87f1Fxhflw6UCIQC1sc44FWwoCOmf7qePUuAUsr/9cR63/8e9rphARRoaPQ=="

    func bytes(_ b64: String) -> [UInt8] { Array(Data(base64Encoded: b64) ?? Data()) }

    @Test("thisUpdate, nextUpdate, responder, nonce and status are read from the DER")
    func readsGood() throws {
        let s = try OCSPResponseSummary(derEncoded: bytes(Self.good))
        #expect(s.responseStatus == 0 && s.hasNonce)
        #expect(s.responder.contains("Fixture CA"))
        let single = try #require(s.response(forSerial: [0x00, 0x8a, 0x1b, 0x2c]))
        #expect(single.status == .good)
        #expect(single.thisUpdate == Date(timeIntervalSince1970: 1_772_366_400))   // 2026-03-01T12:00:00Z
        #expect(single.nextUpdate == Date(timeIntervalSince1970: 1_772_367_000))   // +10 min
        #expect(s.response(forSerial: [0x01]) == nil)
    }

    @Test("a revoked answer carries its time and reason")
    func readsRevoked() throws {
        let s = try OCSPResponseSummary(derEncoded: bytes(Self.revoked))
        #expect(s.responses.first?.status == .revoked(at: Date(timeIntervalSince1970: 1_748_736_000), reason: "keyCompromise"))
    }

    @Test("unsuccessful responses and garbage")
    func unsuccessful() throws {
        #expect(try OCSPResponseSummary(derEncoded: bytes("MAMKAQY=")).responseStatus == 6)
        #expect(throws: (any Error).self) { try OCSPResponseSummary(derEncoded: [0x30, 0x80, 0x00]) }
    }
}
