import Crypto
import CSC
import Foundation
import Synchronization

public enum UsageOutcome: String, Sendable, Codable, CaseIterable {
    /// Done as asked; only these are billed.
    case ok
    /// Refused: bad input, a bound SAD, a policy or a limit (HTTP 4xx).
    case denied
    /// Could not be done: an upstream or the gateway failed (HTTP 5xx).
    case failed
}

/// One CSC operation as the ledger keeps it. No secret ever goes in: no PIN, OTP, SAD, token
/// or hash value, only counts, names and the error text (which is written secret-free).
public struct UsageEvent: Sendable, Equatable {
    /// Deterministic: the same tenant, client, request id and operation give the same id, so a
    /// retried request is recorded (and billed) once. A refused or failed attempt's id also
    /// carries its outcome and time (`attemptID`), so every attempt is kept.
    public var id: String
    public var time: Date
    public var tenantID: String
    public var clientID: String
    public var credentialID: String?
    public var upstream: String?
    public var operation: String
    /// Hashes signed; zero unless the outcome is ok.
    public var signatures: Int
    public var signAlgorithm: String?
    public var hashAlgorithm: String?
    public var outcome: UsageOutcome
    /// The pipeline stage that refused or failed (credential, sad, algorithm, budget, upstream…).
    public var stage: String?
    public var reason: String?
    public var latencyMicros: Int
    public var requestID: String
    /// Content address of the OCSP response relied on, where one was.
    public var evidence: String?
    /// For a signHash: the answer, so a retry with the same request id gets it again unsigned anew.
    public var answer: Data?
    /// The client chose the request id (X-Request-ID), so the same id can come again as a retry.
    /// Only such ids are looked up before recording; an id the gateway made is new by
    /// construction. Not part of the hash chain.
    public var requestIDFromClient: Bool

    public init(id: String, time: Date, tenantID: String, clientID: String, credentialID: String? = nil,
                upstream: String? = nil, operation: String, signatures: Int = 0, signAlgorithm: String? = nil,
                hashAlgorithm: String? = nil, outcome: UsageOutcome, stage: String? = nil, reason: String? = nil,
                latencyMicros: Int = 0, requestID: String, evidence: String? = nil, answer: Data? = nil,
                requestIDFromClient: Bool = false) {
        self.id = id; self.time = time; self.tenantID = tenantID; self.clientID = clientID
        self.credentialID = credentialID; self.upstream = upstream; self.operation = operation
        self.signatures = signatures; self.signAlgorithm = signAlgorithm; self.hashAlgorithm = hashAlgorithm
        self.outcome = outcome; self.stage = stage; self.reason = reason; self.latencyMicros = latencyMicros
        self.requestID = requestID; self.evidence = evidence; self.answer = answer
        self.requestIDFromClient = requestIDFromClient
    }

    public static func eventID(tenantID: String, clientID: String, requestID: String, operation: String) -> String {
        let digest = SHA256.hash(data: Data([tenantID, clientID, requestID, operation].joined(separator: "\u{0}").utf8))
        return Data(digest).hex
    }

    /// A refusal or failure is one attempt of its request, not the request: its id adds the
    /// outcome and the time (to the nanosecond), so it never takes the id that the request's
    /// success, retried under the same request id, must be recorded and billed under.
    public static func attemptID(_ requestEventID: String, outcome: UsageOutcome, time: Date) -> String {
        let nanos = Int64((time.timeIntervalSince1970 * 1_000_000_000).rounded())
        let digest = SHA256.hash(data: Data([requestEventID, outcome.rawValue, String(nanos)].joined(separator: "\u{0}").utf8))
        return Data(digest).hex
    }
}

/// Where usage goes. `record` returns only once the event is durable: the signHash answer
/// waits for it, so nothing signed goes unrecorded.
public protocol UsageLedger: Sendable {
    func record(_ event: UsageEvent) async throws
    /// A recorded ok event with this id, for answering a retried request.
    func recordedEvent(id: String) async throws -> UsageEvent?
    /// Starts making a signing's ok event durable while the signing runs, so that its answer
    /// waits for the slower of the two instead of both in turn. The signing then ends in
    /// `fulfil` (it signed, after `UsageReservation.confirm`) or `release` (it did not); one
    /// that never ends is billed as signed. Nil when this ledger does not reserve: the outcome
    /// is then `record`ed as usual.
    func reserveSigning(_ planned: UsageEvent) -> UsageReservation?
    /// The ok event of a reserved signing; durable through its reservation, so no flush is waited for.
    func fulfil(_ reservation: UsageReservation, with event: UsageEvent) async throws
    /// The refusal or failure of a reserved signing, durable on return: it unbills the reservation.
    func release(_ reservation: UsageReservation, with event: UsageEvent) async throws
}

/// A signing's reservation in the ledger (`UsageLedger.reserveSigning`), on its way to disk.
public struct UsageReservation: Sendable {
    public let key: String
    private let durable: @Sendable () async throws -> Void

    public init(key: String, durable: @escaping @Sendable () async throws -> Void) {
        self.key = key
        self.durable = durable
    }

    /// Returns once the reservation is on disk; throws if it could not be written. Called when
    /// the signing has ended: a reservation still held back to share a flush is written now.
    public func confirm() async throws { try await durable() }
}

/// Operations that have started and not yet reached the ledger. The ledger's group commit
/// reads it: while others are still working, a batch may wait a little for them to join it;
/// an operation alone is written at once.
public final class OperationsInFlight: Sendable {
    private let count = Atomic<Int>(0)

    public init() {}

    public var working: Int { count.load(ordering: .relaxed) }

    func enter() { count.add(1, ordering: .relaxed) }
    func leave() { count.subtract(1, ordering: .relaxed) }
}

/// Facts about one operation, filled in by the pipeline as it goes, read when it ends.
public final class UsageNote: Sendable {
    struct Facts {
        var credentialID: String?
        var upstream: String?
        var stage: String?
        var signatures = 0
        var signAlgorithm: String?
        var hashAlgorithm: String?
        var evidence: String?
        var remark: String?
        var answer: Data?
        /// The ledger holds this signing's ok event already (see `UsageLedger.reserveSigning`).
        var reservation: UsageReservation?
    }

    let facts = Mutex(Facts())

    public init() {}

    func credential(_ route: CredentialRoute) {
        facts.withLock { $0.credentialID = route.id; $0.upstream = route.upstream }
    }

    /// The stage about to run; if it throws, the event names it.
    func stage(_ name: String) { facts.withLock { $0.stage = name } }

    /// The OCSP response the signer-certificate verdict rests on.
    func evidence(_ address: String?) { facts.withLock { $0.evidence = address } }

    /// Something an ok operation should still carry into the ledger (a soft-failed check).
    func remark(_ text: String) { facts.withLock { $0.remark = text } }

    func signed(_ count: Int, signAlgorithm: String, hashAlgorithm: String?, answer: Data?) {
        facts.withLock {
            $0.signatures = count; $0.signAlgorithm = signAlgorithm; $0.hashAlgorithm = hashAlgorithm; $0.answer = answer
        }
    }
}

extension Gateway {
    /// Runs one authenticated operation and records its outcome. For an ok signHash the record
    /// is durable before the signatures are returned; if it cannot be written, they are not.
    public func perform<T: Sendable>(_ method: CSCMethod, _ caller: Caller, _ context: OperationContext,
                                     _ body: (UsageNote) async throws -> T) async throws -> T {
        let started = ContinuousClock.now
        let note = UsageNote()
        let id = UsageEvent.eventID(tenantID: caller.tenantID, clientID: caller.clientID,
                                    requestID: context.requestID, operation: method.operation)
        inFlight.enter()
        let outcome: Result<T, any Error>
        do { outcome = .success(try await body(note)) } catch { outcome = .failure(error) }
        // No longer working: from here on it only waits for its record.
        inFlight.leave()
        switch outcome {
        case .success(let result):
            try await record(id, method, caller, context, note, started, outcome: .ok, error: nil)
            return result
        case .failure(let error as CSCError):
            try? await record(id, method, caller, context, note, started,
                              outcome: error.status >= 500 ? .failed : .denied, error: error)
            throw error
        case .failure(let error):
            try? await record(id, method, caller, context, note, started, outcome: .failed, error: nil)
            throw error
        }
    }

    /// Starts making the ok event of the signing about to run durable while it runs; nil without
    /// a ledger that reserves. Its signatures are not answered before `confirm` has returned.
    func reserveSigning(_ caller: Caller, _ context: OperationContext, _ note: UsageNote, signatures: Int,
                        signAlgorithm: String, hashAlgorithm: String?) -> UsageReservation? {
        guard let ledger else { return nil }
        var f = note.facts.withLock { $0 }
        f.signatures = signatures; f.signAlgorithm = signAlgorithm; f.hashAlgorithm = hashAlgorithm
        let id = UsageEvent.eventID(tenantID: caller.tenantID, clientID: caller.clientID, requestID: context.requestID,
                                    operation: CSCMethod.signaturesSignHash.operation)
        let planned = usageEvent(id, CSCMethod.signaturesSignHash, caller, context, f, micros: 0, outcome: .ok, error: nil)
        let reservation = ledger.reserveSigning(planned)
        note.facts.withLock { $0.reservation = reservation }
        return reservation
    }

    /// Returns once the signing's reservation is durable; if it cannot be, the signatures are withheld.
    func confirm(_ reservation: UsageReservation?, _ context: OperationContext) async throws {
        guard let reservation else { return }
        do {
            try await reservation.confirm()
        } catch {
            context.logger.error("signing could not be reserved in the ledger", metadata: ["reservation": .string(reservation.key)])
            throw Self.unrecorded
        }
    }

    private static let unrecorded = CSCError(status: 503, error: "temporarily_unavailable",
                                             description: "The signing could not be recorded, so its result is withheld; retry later",
                                             headers: ["Retry-After": "5"])

    private func usageEvent(_ id: String, _ method: CSCMethod, _ caller: Caller, _ context: OperationContext, _ f: UsageNote.Facts,
                            micros: Int, outcome: UsageOutcome, error: CSCError?) -> UsageEvent {
        let time = now()
        return UsageEvent(
            id: outcome == .ok ? id : UsageEvent.attemptID(id, outcome: outcome, time: time), time: time, tenantID: caller.tenantID, clientID: caller.clientID, credentialID: f.credentialID,
            upstream: f.upstream, operation: method.operation, signatures: outcome == .ok ? f.signatures : 0,
            signAlgorithm: f.signAlgorithm, hashAlgorithm: f.hashAlgorithm, outcome: outcome,
            stage: outcome == .ok ? nil : (f.stage ?? "request"),
            reason: (error?.errorDescription ?? f.remark).map { String($0.prefix(300)) }, latencyMicros: micros,
            requestID: context.requestID, evidence: f.evidence, answer: outcome == .ok ? f.answer : nil,
            requestIDFromClient: context.requestIDFromClient)
    }

    private func record(_ id: String, _ method: CSCMethod, _ caller: Caller, _ context: OperationContext, _ note: UsageNote,
                        _ started: ContinuousClock.Instant, outcome: UsageOutcome, error: CSCError?) async throws {
        guard let ledger else { return }
        let f = note.facts.withLock { $0 }
        let elapsed = ContinuousClock.now - started
        let micros = Int(elapsed.components.seconds) * 1_000_000 + Int(elapsed.components.attoseconds / 1_000_000_000_000)
        let event = usageEvent(id, method, caller, context, f, micros: micros, outcome: outcome, error: error)
        do {
            let recordStarted = ContinuousClock.now
            switch (f.reservation, outcome) {
            case (let r?, .ok): try await ledger.fulfil(r, with: event)
            case (let r?, _): try await ledger.release(r, with: event)
            case (nil, _): try await ledger.record(event)
            }
            context.logger.debug("usage recorded", metadata: ["ledger_ms": .string(Self.milliseconds(since: recordStarted))])
        } catch {
            context.logger.error("usage event could not be recorded", metadata: [
                "event_id": .string(event.id), "operation": .string(method.operation), "outcome": .string(outcome.rawValue),
            ])
            if outcome == .ok && f.signatures > 0 { throw Self.unrecorded }
        }
    }
}
