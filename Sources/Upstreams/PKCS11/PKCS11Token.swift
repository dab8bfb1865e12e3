import CPKCS11
import Foundation
import GatewayCore
import Synchronization

/// One token of a PKCS#11 module behind a pool of `sessions` logged-in sessions. A call checks
/// a session out (waiting its turn when all are busy, so the pool bounds concurrency into the
/// HSM), runs on it, and checks it back in. Slow calls (RSA) run on the pool's own threads so
/// that blocking PKCS#11 calls do not hold Swift's cooperative threads; calls known to take
/// tens of microseconds (ECDSA) may run inline, where a thread hop would cost more than the call.
///
/// A call that fails because its session went stale (closed behind our back, logged out,
/// module finalised, token pulled or re-initialised) drops the session, recovers — a new
/// session, a new login, the slot found again by label, the module initialised again if need
/// be — and is tried again.
public final class PKCS11Token: @unchecked Sendable {
    public let module: PKCS11Module
    public let tokenLabel: String?
    public let configuredSlot: CK_SLOT_ID?
    public let sessionCount: Int
    // Kept to log in again after a recovery; never logged, never in an error message.
    private let pin: String
    private let state: Mutex<State>
    private let pool: Mutex<Pool>
    private let queue = JobQueue()
    private let recoveryCount = Atomic<Int>(0)

    struct State {
        var slot: CK_SLOT_ID?
        /// Bumped whenever sessions and object handles of before are void (re-initialisation,
        /// sessions closed behind our back); a session of an older generation is dropped
        /// without being closed (its number may belong to someone else by now).
        var generation = 0
        var objects: [String: CK_OBJECT_HANDLE] = [:]
    }

    /// One pooled session, used by one call at a time.
    struct WorkerSession: Sendable {
        var handle: CK_SESSION_HANDLE?
        var generation = -1
    }

    struct Pool {
        var free: [WorkerSession]
        var waiters: [CheckedContinuation<WorkerSession?, Never>] = []
        var stopped = false
    }

    /// Where a call's PKCS#11 work runs.
    public enum Execution: Sendable {
        /// On one of the pool's threads: right for calls that block for long (RSA signing).
        case poolThread
        /// On the calling thread: for calls of tens of microseconds (ECDSA signing).
        case inline
    }

    /// Loads the module (shared per path within the process), initialises it, finds the token
    /// and starts `sessions` threads. Sessions are opened lazily, on first use.
    public init(modulePath: String, tokenLabel: String?, slot: CK_SLOT_ID?, pin: String, sessions: Int) throws {
        precondition(tokenLabel != nil || slot != nil, "a token label or a slot is required")
        self.module = try PKCS11Module.shared(path: modulePath)
        self.tokenLabel = tokenLabel
        self.configuredSlot = slot
        self.pin = pin
        self.sessionCount = max(1, sessions)
        self.state = Mutex(State())
        self.pool = Mutex(Pool(free: Array(repeating: WorkerSession(), count: max(1, sessions))))
        try module.initialize()
        let slot = try findSlot()
        state.withLock { $0.slot = slot }
        for i in 0..<sessionCount {
            NamedThread.start("pkcs11-\(i)", stackSize: 1 << 20) { [queue] in
                while let job = queue.next() { job() }
            }
        }
    }

    /// Stops the threads after the queued calls and closes the sessions as they come back;
    /// calls still waiting for a session fail. The module stays initialised (another user in
    /// this process may share it).
    public func shutdown() {
        queue.stop()
        let (idle, waiters) = pool.withLock { p -> ([WorkerSession], [CheckedContinuation<WorkerSession?, Never>]) in
            p.stopped = true
            defer { p.free = []; p.waiters = [] }
            return (p.free, p.waiters)
        }
        for s in idle { close(s) }
        for w in waiters { w.resume(returning: nil) }
    }

    deinit { queue.stop() }

    /// How many times a stale session or module state was recovered from (for tests and logs).
    public var recoveries: Int { recoveryCount.load(ordering: .relaxed) }

    public var currentSlot: CK_SLOT_ID? { state.withLock { $0.slot } }

    /// Runs `body` with a logged-in session; at most `sessions` bodies run at once.
    public func withSession<T: Sendable>(_ execution: Execution = .poolThread,
                                         _ body: @escaping @Sendable (PKCS11Session) throws -> T) async throws -> T {
        guard var session = await checkout() else { throw PKCS11LoadError(description: "the PKCS#11 token was shut down") }
        switch execution {
        case .inline:
            defer { checkin(session) }
            return try run(body, &session)
        case .poolThread:
            let (result, used): (Result<T, Error>, WorkerSession) = await withCheckedContinuation { continuation in
                let accepted = queue.submit { [self, session] in
                    var s = session
                    let result = Result { try self.run(body, &s) }
                    continuation.resume(returning: (result, s))
                }
                if !accepted {
                    continuation.resume(returning: (.failure(PKCS11LoadError(description: "the PKCS#11 token was shut down")), session))
                }
            }
            checkin(used)
            return try result.get()
        }
    }

    /// A free session, or nil once shut down; waits (FIFO) while all are in use.
    private func checkout() async -> WorkerSession? {
        let (fast, stopped) = pool.withLock { p in (p.stopped ? nil : p.free.popLast(), p.stopped) }
        if stopped { return nil }
        if let fast { return fast }
        return await withCheckedContinuation { continuation in
            let (s, stopped) = pool.withLock { p -> (WorkerSession?, Bool) in
                if p.stopped { return (nil, true) }
                if let s = p.free.popLast() { return (s, false) }
                p.waiters.append(continuation)
                return (nil, false)
            }
            if stopped || s != nil { continuation.resume(returning: s) }
        }
    }

    private func checkin(_ session: WorkerSession) {
        let (waiter, stopped) = pool.withLock { p -> (CheckedContinuation<WorkerSession?, Never>?, Bool) in
            if !p.waiters.isEmpty { return (p.waiters.removeFirst(), p.stopped) }
            if !p.stopped { p.free.append(session) }
            return (nil, p.stopped)
        }
        if let waiter { waiter.resume(returning: session) } else if stopped { close(session) }
    }

    private func close(_ session: WorkerSession) {
        if let h = session.handle, state.withLock({ $0.generation }) == session.generation { module.closeSession(h) }
    }

    /// Ensure a session, call, and on a stale session recover and retry.
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

/// The pool threads' queue: FIFO, a condition variable, and a stop flag.
final class JobQueue: @unchecked Sendable {
    typealias Job = () -> Void
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
