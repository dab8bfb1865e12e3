import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Threads of the gateway's own (the ledger's writers, the PKCS#11 pool) under names the OS
/// shows in `top -H`, `perf` and /proc: on Linux, Foundation's `Thread.name` set before `start()`
/// stays on the Thread object and the thread keeps its creator's name.
public enum NamedThread {
    /// How the kernel schedules the thread.
    public enum Scheduling: Sendable {
        case normal
        /// Linux `SCHED_BATCH`: same share of the CPU, but waking it never preempts a running
        /// thread. For work with slack that wakes thousands of times a second (the ledger's
        /// writers): preempting an event loop or an HSM thread mid-request cost those more than
        /// running a moment later costs the writer.
        case batch
    }

    /// `SCHED_BATCH` in <sched.h>, which Swift's Glibc module does not export.
    private static let schedBatch: Int32 = 3

    public static func start(_ name: String, stackSize: Int? = nil, scheduling: Scheduling = .normal,
                             _ body: @escaping @Sendable () -> Void) {
        let thread = Thread {
            #if canImport(Glibc)
            // What pthread_setname_np does (not exported to Swift): at most 15 bytes.
            let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
            if fd >= 0 {
                let bytes = Array(name.utf8.prefix(15))
                _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                close(fd)
            }
            if scheduling == .batch {
                // Allowed without privileges; should it fail, the thread runs as a normal one.
                var param = sched_param()
                _ = sched_setscheduler(0, schedBatch, &param)
            }
            #endif
            body()
        }
        thread.name = name
        if let stackSize { thread.stackSize = stackSize }
        thread.start()
    }
}
