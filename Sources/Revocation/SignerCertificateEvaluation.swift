import AsyncHTTPClient
import Crypto
import Foundation
import GatewayCore
import SwiftASN1
import Synchronization
import X509

/// One full check of a signer certificate, with everything `cscgate ocsp check` shows: the
/// verdict, the path to the anchor, the responder and the response.
public struct SignerCertificateEvaluation: Sendable {
    public var verdict: SignerCertificateVerdict
    /// Subjects from the signer certificate up to the trust anchor, when a path was found.
    public var path: [String] = []
    public var responderURL: String?
    public var method: String?
    public var response: OCSPResponseSummary?
    /// The response as received; stored as evidence when it decided a verdict.
    public var responseDER: [UInt8]?
    public var issuer: String?
    public var fingerprint: String?

    public init(verdict: SignerCertificateVerdict) { self.verdict = verdict }
}

/// Runs swift-certificates' `Verifier` (RFC 5280 path validation to the policy's anchors, and
/// `OCSPVerifierPolicy` in hard mode with our requester), then classifies the outcome so the
/// gateway's own failure mode applies. Costs a network exchange: only a cache miss comes here.
public struct OCSPEvaluator: Sendable {
    let settings: OCSPSettings
    let anchors: TrustAnchors
    let client: HTTPClient
    let postOnly = PostOnlyResponders()

    public init(settings: OCSPSettings, anchors: TrustAnchors, client: HTTPClient) {
        self.settings = settings; self.anchors = anchors; self.client = client
    }

    public func evaluate(_ subject: SignerCertificateSubject, now: Date) async -> SignerCertificateEvaluation {
        let policy = subject.policy
        let retry = now.addingTimeInterval(settings.retryAfter)
        func failed(_ status: SignerCertificateVerdict.Status, _ detail: String, until: Date? = nil) -> SignerCertificateEvaluation {
            let soft = (status == .unknown || status == .unavailable) && policy.failureMode == .soft
            return SignerCertificateEvaluation(verdict: .init(status: status, detail: detail, softFailed: soft, validUntil: until ?? retry))
        }
        let chain: [Certificate]
        do {
            chain = try subject.chain.map { text in
                guard let der = Data(base64Encoded: text) else { throw OCSPTransportError("not base64") }
                return try Certificate(derEncoded: Array(der))
            }
        } catch {
            return failed(.untrusted, "the upstream's certificate cannot be read")
        }
        guard let leaf = chain.first else { return failed(.untrusted, "the upstream describes no certificate") }
        var result = SignerCertificateEvaluation(verdict: .init(status: .good, detail: "", validUntil: now))
        result.issuer = leaf.issuer.description
        result.fingerprint = Data(SHA256.hash(data: Self.der(leaf))).hex

        // Validity and key usage first: cheap, and their answers do not depend on a responder.
        if now < leaf.notValidBefore {
            return merge(result, failed(.notYetValid, "valid from \(Self.stamp(leaf.notValidBefore))", until: leaf.notValidBefore))
        }
        if now > leaf.notValidAfter {
            return merge(result, failed(.expired, "expired on \(Self.stamp(leaf.notValidAfter))", until: .distantFuture))
        }
        if let usage = try? leaf.extensions.keyUsage {
            let fits = policy.keyUsage == .nonRepudiation ? usage.nonRepudiation : (usage.digitalSignature || usage.nonRepudiation)
            if !fits {
                return merge(result, failed(.unfitForSigning, "its key usage does not include \(policy.keyUsage.rawValue)",
                                            until: leaf.notValidAfter))
            }
        }
        let roots = anchors.certificates(policy.trustAnchors)
        guard !roots.isEmpty else { return merge(result, failed(.untrusted, "no trust anchors are configured for it")) }

        let override = settings.responders.first { $0.issuer == leaf.issuer.description }?.url
        let aia = (try? leaf.extensions.authorityInformationAccess)?.first { $0.method == .ocspServer }
        guard override != nil || aia != nil else {
            return merge(result, failed(.unavailable, "it names no OCSP responder and none is configured for its issuer"))
        }
        let exchange = OCSPExchange()
        let requester = HTTPOCSPRequester(client: client, overrideURL: override, timeout: settings.timeout, useGET: settings.get,
                                          getMaxBytes: settings.getMaxBytes, postOnly: postOnly, exchange: exchange)
        var verifier = Verifier(rootCertificates: CertificateStore(roots)) {
            RFC5280Policy()
            OCSPVerifierPolicy(failureMode: .hard, requester: requester)
        }
        let validation = await verifier.validate(leaf: leaf, intermediates: CertificateStore(Array(chain.dropFirst())))
        let seen = exchange.snapshot
        result.responderURL = seen.url
        result.method = seen.method
        result.responseDER = seen.response
        if let der = seen.response { result.response = try? OCSPResponseSummary(derEncoded: der) }
        let single = result.response?.response(forSerial: leaf.serialNumber.bytes)

        switch validation {
        case .validCertificate(let validated):
            result.path = validated.map { $0.subject.description }
            guard let single, seen.response != nil else {
                return merge(result, failed(.unavailable, "the OCSP responder gave no usable answer"))
            }
            // swift-certificates allows 75 minutes of leeway; the operator's clock skew is stricter.
            if single.thisUpdate > now.addingTimeInterval(settings.clockSkew) {
                return merge(result, failed(.unavailable, "the OCSP response is dated in the future (thisUpdate \(Self.stamp(single.thisUpdate)))"))
            }
            guard let next = single.nextUpdate else {
                return merge(result, failed(.unavailable, "the OCSP response has no nextUpdate"))
            }
            if next.addingTimeInterval(settings.clockSkew) < now {
                return merge(result, failed(.unavailable, "the OCSP response is stale (nextUpdate \(Self.stamp(next)))"))
            }
            let until = min(next, now.addingTimeInterval(settings.maxAge), leaf.notValidAfter)
            result.verdict = .init(status: .good, detail: "good at \(seen.url ?? "the responder"), thisUpdate \(Self.stamp(single.thisUpdate))",
                                   validUntil: max(until, now))
            return result
        case .couldNotValidate(let failures):
            let reasons = failures.map { "\($0.policyFailureReason)" }
            if let failure = seen.failure { return merge(result, failed(.unavailable, failure)) }
            if seen.response == nil {
                let why = reasons.first.map { ": \($0.prefix(200))" } ?? ""
                return merge(result, failed(.untrusted, "it does not chain to the configured trust anchors\(why)"))
            }
            result.path = failures.first.map { $0.chain.map { $0.subject.description } } ?? []
            if reasons.contains(where: { $0.hasPrefix("revoked through OCSP") }), let single, case .revoked(let at, let reason) = single.status {
                let next = single.nextUpdate ?? now.addingTimeInterval(settings.maxAge)
                result.verdict = .init(status: .revoked,
                                       detail: "revoked since \(Self.stamp(at))" + (reason.map { ", reason \($0)" } ?? ""),
                                       validUntil: min(max(next, now), now.addingTimeInterval(settings.maxAge)))
                return result
            }
            if reasons.contains(where: { $0.contains("status unknown") }), single?.status == .unknown {
                return merge(result, failed(.unknown, "its OCSP responder answered unknown"))
            }
            result.responseDER = nil  // an answer that failed verification is no evidence
            let why = reasons.first.map { String($0.prefix(200)) } ?? "rejected"
            return merge(result, failed(.unavailable, "the OCSP response is invalid: \(why)"))
        }
    }

    private func merge(_ base: SignerCertificateEvaluation, _ verdictOnly: SignerCertificateEvaluation) -> SignerCertificateEvaluation {
        var r = base
        r.verdict = verdictOnly.verdict
        return r
    }

    static func der(_ certificate: Certificate) -> [UInt8] {
        var serializer = DER.Serializer()
        try? serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    static func stamp(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: date)
    }
}

/// The anchor files named in configuration, read once at start; a file that cannot be read
/// stops the gateway there rather than refusing every signature later.
/// The CA certificates named by `trustAnchors`, by file. Read at start and again on each
/// configuration reload, so a tenant added or changed at runtime is checked against its own.
public final class TrustAnchors: Sendable {
    private let byFile: Mutex<[String: [Certificate]]>

    public init(files: [String]) throws {
        byFile = Mutex(try Self.read(files))
    }

    /// Every anchor file the configuration names: upstreams' and tenants'.
    public convenience init(configuration: LoadedConfiguration) throws {
        try self.init(files: Self.files(configuration))
    }

    /// Reads the files `configuration` names and swaps them in, all or nothing. True when the
    /// anchors changed, i.e. verdicts reached with the old ones may no longer hold.
    @discardableResult
    public func reload(_ configuration: LoadedConfiguration) throws -> Bool {
        let next = try Self.read(Self.files(configuration))
        return byFile.withLock { current in
            defer { current = next }
            return current != next
        }
    }

    func certificates(_ files: [String]) -> [Certificate] {
        byFile.withLock { m in files.flatMap { m[$0] ?? [] } }
    }

    static func files(_ configuration: LoadedConfiguration) -> [String] {
        configuration.gateway.upstreams.flatMap(\.trustAnchors) + configuration.tenants.flatMap { $0.signerCertificates.trustAnchors ?? [] }
    }

    static func read(_ files: [String]) throws -> [String: [Certificate]] {
        var byFile = [String: [Certificate]]()
        for path in Set(files) {
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                throw OCSPTransportError("trust anchor file \(path) cannot be read")
            }
            let documents = try PEMDocument.parseMultiple(pemString: text).filter { $0.discriminator == "CERTIFICATE" }
            guard !documents.isEmpty else { throw OCSPTransportError("trust anchor file \(path) holds no PEM certificate") }
            byFile[path] = try documents.map { try Certificate(derEncoded: $0.derBytes) }
        }
        return byFile
    }
}

extension Data {
    var hex: String { map { String($0, radix: 16).leftPadded(2) }.joined() }
}
