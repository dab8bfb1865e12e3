import CPKCS11
import Foundation
import Synchronization

/// One token of a PKCS#11 module, reached through a fixed set of worker threads, each owning
/// one logged-in session. The pool size bounds concurrency into the HSM, and blocking
/// PKCS#11 calls never run on Swift's cooperative threads.
///
/// A call that fails because its session went stale (closed behind our back, logged out,
/// module finalised, token pulled or re-initialised) drops the session, recovers — a new
/// session, a new login, the slot found again by label, the module initialised again if need
/// be — and is tried once more.
public final class PKCS11Token: @unchecked Sendable {
    public let module: PKCS11Module
    public let tokenLabel: String?
    public let configuredSlot: CK_SLOT_ID?
    public let sessionCount: Int
    // Kept to log in again after a recovery; never logged, never in an error message.
    private let pin: String
    private let state: Mutex<State>
    private let queue = JobQueue()
    private var threads: [Thread] = []
    private let recoveryCount = Atomic<Int>(0)

    struct State {
        var slot: CK_SLOT_ID?
        /// Bumped whenever sessions and object handles of before are void (re-initialisation,
        /// slot found anew); a worker whose session is older drops it without closing it.
        var generation = 0
        var objects: [String: CK_OBJECT_HANDLE] = [:]
    }

    /// One worker's session; only that worker's thread touches it.
    struct WorkerSession {
        var handle: CK_SESSION_HANDLE?
        var generation = -1
    }

    /// Loads the module (shared per path within the process), initialises it and starts
    /// `sessions` workers. Sessions are opened lazily, on first use.
    public init(modulePath: String, tokenLabel: String?, slot: CK_SLOT_ID?, pin: String, sessions: Int) throws {
        precondition(tokenLabel != nil || slot != nil, "a token label or a slot is required")
        self.module = try PKCS11Module.shared(path: modulePath)
        self.tokenLabel = tokenLabel
        self.configuredSlot = slot
        self.pin = pin
        self.sessionCount = max(1, sessions)
        self.state = Mutex(State())
        try module.initialize()
        let slot = try findSlot()
        state.withLock { $0.slot = slot }
        for i in 0..<sessionCount {
            let thread = Thread { [queue, weak self] in
                var session = WorkerSession()
                while let job = queue.next() {
                    guard let self else { job(nil, &session); continue }
                    job(self, &session)
                }
                if let h = session.handle, let self, self.state.withLock({ $0.generation }) == session.generation {
                    self.module.closeSession(h)
                }
            }
            thread.name = "pkcs11-\(i)"
            thread.stackSize = 1 << 20
            threads.append(thread)
            thread.start()
        }
    }

    /// Stops the workers after the queued calls; their sessions are closed. The module stays
    /// initialised (another user in this process may share it).
    public func shutdown() {
        queue.stop()
    }

    deinit { queue.stop() }

    /// How many times a stale session or module state was recovered from (for tests and logs).
    public var recoveries: Int { recoveryCount.load(ordering: .relaxed) }

    public var currentSlot: CK_SLOT_ID? { state.withLock { $0.slot } }

    /// Runs `body` with a logged-in session on a worker thread; at most `sessions` run at once.
    public func withSession<T: Sendable>(_ body: @escaping @Sendable (PKCS11Session) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            let accepted = queue.submit { token, worker in
                guard let token else {
                    continuation.resume(throwing: PKCS11LoadError(description: "the PKCS#11 token was shut down"))
                    return
                }
                do { continuation.resume(returning: try token.run(body, &worker)) } catch { continuation.resume(throwing: error) }
            }
            if !accepted { continuation.resume(throwing: PKCS11LoadError(description: "the PKCS#11 token was shut down")) }
        }
    }

    /// Runs on a worker thread: ensure a session, call, and on a stale session recover and retry once.
    private func run<T>(_ body: (PKCS11Session) throws -> T, _ worker: inout WorkerSession) throws -> T {
        // Once for the call itself; once more if the recovery itself meets a second stale
        // state (e.g. the slot renumbered after the module was initialised again).
        var retries = 0
        while true {
            do {
                let handle = try ensureSession(&worker)
                return try body(PKCS11Session(token: self, handle: handle))
            } catch let error as PKCS11Error where error.invalidatesSession && retries < 2 {
                retries += 1
                recover(from: error, &worker)
            }
        }
    }

    private func ensureSession(_ worker: inout WorkerSession) throws(PKCS11Error) -> CK_SESSION_HANDLE {
        let (slot, generation) = state.withLock { ($0.slot, $0.generation) }
        if worker.generation != generation { worker.handle = nil }
        if let h = worker.handle { return h }
        guard let slot else { throw PKCS11Error(CKR_TOKEN_NOT_PRESENT, "C_OpenSession") }
        let h = try module.openSession(slot: slot, readWrite: true)
        do { try module.login(h, pin: pin) } catch {
            module.closeSession(h)
            throw error
        }
        worker.handle = h
        worker.generation = generation
        return h
    }

    private func recover(from error: PKCS11Error, _ worker: inout WorkerSession) {
        recoveryCount.add(1, ordering: .relaxed)
        if let h = worker.handle, [CKR_USER_NOT_LOGGED_IN, CKR_OPERATION_ACTIVE, CKR_KEY_HANDLE_INVALID,
                                   CKR_OBJECT_HANDLE_INVALID].contains(error.rv) {
            module.closeSession(h)  // still a valid handle: give it back
        }
        worker.handle = nil
        let observed = worker.generation
        state.withLock { s in
            // Whatever went wrong, handles found before are not to be trusted: after a module
            // re-initialisation the same number may name another object.
            s.objects = [:]
            guard error.voidsAllSessions, s.generation == observed || observed < 0 else { return }
            guard error.needsReinitialisation else {
                // Sessions closed behind our back: the other workers' handles are dead too, and
                // their numbers may be handed out again; nobody uses a handle of before.
                s.generation += 1
                return
            }
            if error.rv == CKR_CRYPTOKI_NOT_INITIALIZED { try? module.initialize() }
            var slot = try? findSlot()
            if slot == nil {
                // The module may hold a stale view of the token: start it afresh.
                try? module.finalize()
                try? module.initialize()
                slot = try? findSlot()
            }
            s.slot = slot
            s.generation += 1
        }
    }

    /// The slot of the configured token: by label (SoftHSM renumbers slots), else by number.
    func findSlot() throws(PKCS11Error) -> CK_SLOT_ID {
        let tokens = try module.tokens()
        if let label = tokenLabel {
            guard let t = tokens.first(where: { $0.label == label }) else { throw PKCS11Error(CKR_TOKEN_NOT_PRESENT, "C_GetTokenInfo") }
            return t.slot
        }
        guard let slot = configuredSlot, tokens.contains(where: { $0.slot == slot }) else {
            throw PKCS11Error(CKR_SLOT_ID_INVALID, "C_GetSlotList")
        }
        return slot
    }

    func cachedObject(_ key: String) -> CK_OBJECT_HANDLE? { state.withLock { $0.objects[key] } }
    func cacheObject(_ key: String, _ handle: CK_OBJECT_HANDLE) { state.withLock { $0.objects[key] = handle } }
    public func forgetObjects() { state.withLock { $0.objects = [:] } }
}

/// A logged-in session, valid for the duration of one `withSession` body.
public struct PKCS11Session {
    let token: PKCS11Token
    public let handle: CK_SESSION_HANDLE
    public var module: PKCS11Module { token.module }
}

/// The workers' queue: FIFO, a condition variable, and a stop flag.
final class JobQueue: @unchecked Sendable {
    typealias Job = (PKCS11Token?, inout PKCS11Token.WorkerSession) -> Void
    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var head = 0
    private var stopped = false

    func submit(_ job: @escaping Job) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !stopped else { return false }
        jobs.append(job)
        condition.signal()
        return true
    }

    /// The next job, or nil once stopped and drained.
    func next() -> Job? {
        condition.lock()
        defer { condition.unlock() }
        while head == jobs.count && !stopped { condition.wait() }
        guard head < jobs.count else { return nil }
        let job = jobs[head]
        head += 1
        if head > 1024 && head * 2 > jobs.count {
            jobs.removeFirst(head)
            head = 0
        }
        return job
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }
}

extension PKCS11Module {
    private static let loaded = Mutex<[String: PKCS11Module]>([:])

    /// One instance per module path: a module has process-wide state (`C_Initialize`), so all
    /// users in a process share it.
    public static func shared(path: String) throws -> PKCS11Module {
        try loaded.withLock { modules in
            if let m = modules[path] { return m }
            let m = try PKCS11Module(path: path)
            modules[path] = m
            return m
        }
    }
}
