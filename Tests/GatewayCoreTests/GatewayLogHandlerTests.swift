import GatewayCore
import Logging
import Synchronization
import Testing

@Suite("Log lines")
struct GatewayLogHandlerTests {
    @Test("a line carries the logger's and the call's metadata, sorted, in StreamLogHandler's format; below the level nothing is written")
    func format() throws {
        let lines = Mutex<[String]>([])
        var logger = Logger(label: "cscgate") { label in
            GatewayLogHandler(label: label, level: .info, output: { line in lines.withLock { $0.append(line) } })
        }
        logger[metadataKey: "request_id"] = "r-1"
        logger[metadataKey: "tenant"] = "acme"
        logger.debug("not written")
        logger.info("hashes signed", metadata: ["signatures": "2"])
        logger[metadataKey: "tenant"] = nil
        logger.warning("no tenant")
        let written = lines.withLock { $0 }
        #expect(written.count == 2)
        let first = try #require(written.first)
        #expect(first.hasSuffix(" info cscgate: request_id=r-1 signatures=2 tenant=acme [GatewayCoreTests] hashes signed\n"))
        // The time first, as StreamLogHandler writes it: 2026-12-06T23:40:00+0000.
        #expect(try first.prefix(25).wholeMatch(of: Regex(#"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} "#)) != nil)
        #expect(written.last?.hasSuffix(" warning cscgate: request_id=r-1 [GatewayCoreTests] no tenant\n") == true)
    }
}
