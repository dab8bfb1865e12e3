import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Threads of the gateway's own (the ledger's writers, the PKCS#11 pool) under names the OS
/// shows in `top -H`, `perf` and /proc: on Linux, Foundation's `Thread.name` set before `start()`
/// stays on the Thread object and the thread keeps its creator's name.
public enum NamedThread {
    public static func start(_ name: String, stackSize: Int? = nil, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread {
            #if canImport(Glibc)
            // What pthread_setname_np does (not exported to Swift): at most 15 bytes.
            let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
            if fd >= 0 {
                let bytes = Array(name.utf8.prefix(15))
                _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                close(fd)
            }
            #endif
            body()
        }
        thread.name = name
        if let stackSize { thread.stackSize = stackSize }
        thread.start()
    }
}
