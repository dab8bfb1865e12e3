import Crypto
import Foundation
import GatewayCore
import Logging
import Synchronization

/// The gateway's `RevocationChecker`: verdicts cached per certificate and policy until
/// min(nextUpdate, fetched + maxAge, notAfter), so the signHash path pays a lock and a
/// dictionary lookup; only a miss runs the verifier (≈ 1 ms plus the responder), once for all
/// concurrent requests about the same certificate.
public final class OCSPChecker: RevocationChecker {
    public typealias Evaluate = @Sendable (SignerCertificateSubject, Date) async -> SignerCertificateEvaluation

    struct Key: Hashable, Sendable {
        /// The leaf as the upstream encodes it: hashing the string is cheaper than hashing DER we would first decode.
        let leaf: String
        let policy: SignerCertificatePolicy
    }

    private let verdicts = Mutex<[Key: SignerCertificateVerdict]>([:])
    private let flights = SharedEvaluations()
    private let evaluate: Evaluate
    private let evidence: (any EvidenceStore)?
    private let now: @Sendable () -> Date
    /// The anchors the evaluator uses, reloaded with the configuration; nil when tests evaluate.
    private let anchors: TrustAnchors?

    public init(evidence: (any EvidenceStore)?, now: @escaping @Sendable () -> Date = Date.init, anchors: TrustAnchors? = nil,
                evaluate: @escaping Evaluate) {
        self.evidence = evidence
        self.now = now
        self.anchors = anchors
        self.evaluate = evaluate
    }

    public convenience init(evaluator: OCSPEvaluator, evidence: (any EvidenceStore)?) {
        self.init(evidence: evidence, anchors: evaluator.anchors) { subject, now in await evaluator.evaluate(subject, now: now) }
    }

    /// Reads the trust anchors again. When they changed, every cached verdict goes: a chain
    /// trusted (or not) under the old anchors is evaluated afresh.
    public func reload(_ configuration: LoadedConfiguration) throws {
        guard let anchors, try anchors.reload(configuration) else { return }
        verdicts.withLock { $0.removeAll() }
    }

    public func verdict(for subject: SignerCertificateSubject, _ context: OperationContext) async -> SignerCertificateVerdict {
        let key = Key(leaf: subject.chain.first ?? "", policy: subject.policy)
        let at = now()
        if let cached = verdicts.withLock({ $0[key] }), cached.validUntil > at { return cached }
        return await flights.run(key) { [self] in
            // A request that waited for the lock may find the work already done.
            if let cached = verdicts.withLock({ $0[key] }), cached.validUntil > now() { return cached }
            let started = ContinuousClock.now
            var evaluation = await evaluate(subject, now())
            evaluation.verdict = await keepEvidence(evaluation, context)
            let verdict = evaluation.verdict
            verdicts.withLock { $0[key] = verdict }
            context.logger.info("signer certificate checked", metadata: [
                "credential": .string(subject.credentialID), "upstream": .string(subject.upstream),
                "status": .string(verdict.status.rawValue), "soft_failed": .stringConvertible(verdict.softFailed),
                "detail": .string(verdict.detail), "responder": .string(evaluation.responderURL ?? "-"),
                "evidence": .string(verdict.evidence ?? "-"), "check_ms": .stringConvertible((ContinuousClock.now - started).milliseconds),
            ])
            return verdict
        }
    }

    /// Stores the deciding response before any event can reference it. A response that cannot be
    /// kept turns a good verdict into an unavailable one: nothing is signed on unrecorded evidence.
    private func keepEvidence(_ evaluation: SignerCertificateEvaluation, _ context: OperationContext) async -> SignerCertificateVerdict {
        var verdict = evaluation.verdict
        guard let der = evaluation.responseDER, [.good, .revoked, .unknown].contains(verdict.status) else { return verdict }
        guard let evidence else {
            verdict.evidence = EvidenceAddress.of(der)
            return verdict
        }
        do {
            verdict.evidence = try await evidence.storeEvidence(Data(der))
        } catch {
            context.logger.error("OCSP response could not be stored as evidence", metadata: ["error": .string("\(error)")])
            if verdict.status == .good {
                return SignerCertificateVerdict(status: .unavailable, detail: "its OCSP response could not be stored as evidence",
                                                softFailed: false, validUntil: now())
            }
        }
        return verdict
    }

    /// Drops every cached verdict (tests, and a future reload).
    public func forgetAll() { verdicts.withLock { $0.removeAll() } }
}

/// Content addresses of evidence: lower-case hex SHA-256 of the DER.
public enum EvidenceAddress {
    public static func of(_ der: [UInt8]) -> String {
        Data(SHA256.hash(data: der)).hex
    }
}

/// One evaluation per key at a time; later callers wait for the first one's verdict.
actor SharedEvaluations {
    private var inFlight: [OCSPChecker.Key: Task<SignerCertificateVerdict, Never>] = [:]

    func run(_ key: OCSPChecker.Key, _ make: @escaping @Sendable () async -> SignerCertificateVerdict) async -> SignerCertificateVerdict {
        if let t = inFlight[key] { return await t.value }
        let task = Task { await make() }
        inFlight[key] = task
        let verdict = await task.value
        inFlight[key] = nil
        return verdict
    }
}

extension Duration {
    var milliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
}
