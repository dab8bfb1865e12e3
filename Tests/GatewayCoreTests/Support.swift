import CSC
import Foundation
@testable import GatewayCore
import Synchronization
import Testing

/// A clock the test moves by hand; safe to read from the actors that use it.
final class FakeClock: Sendable {
    private let current: Mutex<Date>

    init(_ start: Date = Date(timeIntervalSince1970: 1_700_000_000)) { current = Mutex(start) }

    var now: Date { current.withLock { $0 } }
    func advance(_ seconds: Double) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
    /// For the `now:` parameters of the types under test.
    var source: @Sendable () -> Date { { [self] in self.now } }
}

/// Secret hashes at the lowest cost the parser accepts, made once.
enum Secrets {
    static let appSecret = "acme-app-secret-0001"
    static let appHash = try! SecretHash.make(secret: appSecret, logN: 10)
}

/// A folder under the system temp directory, removed when the test ends.
final class TempDirectory {
    let url: URL
    var path: String { url.path }

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("cscgate-tests-\(UUID().uuidString)")
            .standardizedFileURL
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    @discardableResult
    func write(_ relativePath: String, _ text: String) throws -> String {
        let file = url.appendingPathComponent(relativePath)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: file)
        return file.path
    }
}

/// The 1-based line of the `occurrence`-th line containing `needle`, as an editor shows it.
func line(of needle: String, in text: String, occurrence: Int = 1) -> Int? {
    var seen = 0
    for (i, l) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where l.contains(needle) {
        seen += 1
        if seen == occurrence { return i + 1 }
    }
    return nil
}
