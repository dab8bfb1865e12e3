import Crypto
import Foundation
@testable import GatewayCore
import GRDB
import Synchronization
import Testing
@testable import Ledger
#if canImport(Glibc)
import Glibc
#endif

/// The SQLite ledger's journal: what it writes, what it reads back after a crash or a torn
/// write, and how the database catches up with it.
@Suite("Usage journal (SQLite ledger)")
struct JournalTests {
    static func directory() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("journal-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func allFields(_ n: Int) -> UsageEvent {
        UsageEvent(id: "id-\(n)", time: Date(timeIntervalSince1970: 1_800_000_000.123456789 + Double(n)), tenantID: "acme",
                   clientID: "app", credentialID: n % 2 == 0 ? "cred-é" : nil, upstream: n % 3 == 0 ? nil : "vendor-a",
                   operation: "signatures/signHash", signatures: n, signAlgorithm: "1.2.840.10045.4.3.2",
                   hashAlgorithm: n % 2 == 0 ? nil : "2.16.840.1.101.3.4.2.1", outcome: [.ok, .denied, .failed][n % 3],
                   stage: n % 3 == 0 ? nil : "upstream", reason: n % 3 == 0 ? nil : "Invalid \"digest\"\n length ✓",
                   latencyMicros: 1234 + n, requestID: "req-\(n)", evidence: n % 4 == 0 ? "ab12" : nil,
                   answer: n % 2 == 0 ? Data((0..<(n * 7 % 300)).map { UInt8($0 & 0xFF) }) : nil, requestIDFromClient: n % 2 == 1)
    }

    @Test("every field of an event comes back exactly as written, absent ones absent")
    func codecRoundTrip() throws {
        for n in 0..<40 {
            let e = Self.allFields(n)
            let payload = JournalRecord.encode(e)
            let back = payload.withUnsafeBytes { JournalRecord.decodeEvent($0) }
            #expect(back == e)
            // A payload cut anywhere is refused, never half read.
            for cut in [1, payload.count / 2, payload.count - 1] {
                #expect(Array(payload.prefix(cut)).withUnsafeBytes { JournalRecord.decodeEvent($0) } == nil)
            }
        }
    }

    @Test("a record whose bytes changed fails its checksum")
    func checksum() {
        var out = [UInt8]()
        JournalRecord.append(kind: .event, seq: 7, endsBatch: true, payload: JournalRecord.encode(Self.allFields(3)), to: &out)
        #expect(out.withUnsafeBytes { JournalRecord.read($0, at: 0) }?.0.seq == 7)
        for i in stride(from: 0, to: out.count, by: 13) {
            var bad = out
            bad[i] ^= 0x40
            #expect(bad.withUnsafeBytes { JournalRecord.read($0, at: 0) } == nil, "byte \(i) flipped")
        }
    }

    @Test("batches written are read back in order after a reopen, across many segments")
    func reopenAcrossSegments() throws {
        let dir = try Self.directory()
        var written = [UsageEvent]()
        do {
            let j = try UsageJournal.open(directory: dir, segmentBytes: 64 << 10, afterSeq: 0)
            for b in 0..<60 {
                let batch = (0..<(1 + b % 7)).map { Self.allFields(b * 10 + $0) }
                let entries = try j.append(batch)
                #expect(entries.map(\.event) == batch)
                written += batch
            }
            #expect(j.segmentCount > 3, "64 KiB segments should have rolled")
        }
        do {
            let again = try UsageJournal.open(directory: dir, segmentBytes: 64 << 10, afterSeq: 0)
            #expect(again.recovered.entries.map(\.event) == written)
            #expect(again.recovered.entries.map(\.seq) == Array(1...UInt64(written.count)))
        }
        // What the database already holds is not handed back.
        let later = try reopen(dir, afterSeq: 100)
        #expect(later.recovered.entries.first?.seq == 101)
        #expect(later.recovered.entries.count == written.count - 100)
    }

    @Test("segments are recycled once stored, and what a recycled segment still holds never comes back")
    func recyclingNeverResurrects() throws {
        let dir = try Self.directory()
        var all = [UsageJournal.Entry]()
        var stored: UInt64 = 0
        do {
            let j = try UsageJournal.open(directory: dir, segmentBytes: 64 << 10, afterSeq: 0)
            for b in 0..<400 {
                all += try j.append((0..<(1 + b % 5)).map { Self.allFields(b * 10 + $0) })
                if b % 7 == 6 {
                    // The database has caught up with all but the last few events.
                    stored = all[all.count - 3].seq
                    j.release(through: stored)
                    j.prepareSpare()
                }
            }
            #expect(j.segmentCount <= 4, "released segments are recycled or deleted, not kept")
            #expect((try UsageJournal.segmentNames(dir).map(\.number).max() ?? 0) > 10, "segments were rolled many times")
        }
        // Reopened with the database's position: exactly the events after it, nothing older.
        do {
            let again = try reopen(dir, afterSeq: stored)
            #expect(again.recovered.entries.map(\.seq) == all.filter { $0.seq > stored }.map(\.seq))
            #expect(again.recovered.entries.map(\.event) == all.filter { $0.seq > stored }.map(\.event))
        }
        // Even with the database lost, no stale record comes back: what is read is contiguous and true.
        let lost = try reopen(dir, afterSeq: 0)
        let seqs = lost.recovered.entries.map(\.seq)
        #expect(seqs == Array((seqs.first ?? 1)...(seqs.last ?? 0)))
        #expect(seqs.last == all.last?.seq)
        for e in lost.recovered.entries { #expect(e.event == all[Int(e.seq) - 1].event) }
    }

    private func reopen(_ dir: String, afterSeq: UInt64) throws -> UsageJournal {
        try UsageJournal.open(directory: dir, segmentBytes: 64 << 10, afterSeq: afterSeq, lockWait: .seconds(2))
    }

    /// The one used segment of a journal with batches of 3, 2 and 4 events.
    private func threeBatches() throws -> (dir: String, segment: String, batchStarts: [Int]) {
        let dir = try Self.directory()
        let j = try UsageJournal.open(directory: dir, afterSeq: 0)
        for size in [3, 2, 4] { _ = try j.append((0..<size).map { Self.allFields($0) }) }
        let segment = try UsageJournal.segmentNames(dir).first { name in
            (try? Data(contentsOf: URL(fileURLWithPath: name.path)).prefix(16)) == Data(UsageJournal.headerMagic)
        }
        let path = try #require(segment?.path)
        return (dir, path, [4096, 8192, 12288])
    }

    @Test("a batch torn by a crash is dropped whole, even where its first records are intact")
    func tornBatchDroppedWhole() throws {
        let (dir, segment, starts) = try threeBatches()
        // Damage the last record of the third batch: its first three records stay readable.
        let fd = open(segment, O_RDWR)
        let firstRecord = try #require(
            try Data(contentsOf: URL(fileURLWithPath: segment)).withUnsafeBytes { JournalRecord.read($0, at: starts[2]) })
        var offset = starts[2]
        for _ in 0..<3 { offset += JournalRecord.headerSize + firstRecord.0.length }
        var garbage: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF]
        _ = pwrite(fd, &garbage, 4, off_t(offset + 30))
        close(fd)
        do {
            let again = try reopen(dir, afterSeq: 0)
            #expect(again.recovered.entries.count == 5, "batches of 3 and 2 whole, the torn one of 4 dropped")
            #expect(again.recovered.lastSeq == 5)
            // New records continue in a new segment, and a later reopen reads both.
            let more = try again.append([Self.allFields(99)])
            #expect(more.map(\.seq) == [6])
        }
        let third = try reopen(dir, afterSeq: 0)
        #expect(third.recovered.entries.map(\.seq) == [1, 2, 3, 4, 5, 6])
    }

    @Test("a journal cut short mid-batch (power cut during the write) ends at the last whole batch")
    func truncatedTail() throws {
        let (dir, segment, starts) = try threeBatches()
        let fd = open(segment, O_RDWR)
        // Zero everything after the first record of the second batch.
        let zeros = [UInt8](repeating: 0, count: 64 << 10)
        _ = zeros.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(starts[1] + 100)) }
        close(fd)
        let again = try reopen(dir, afterSeq: 0)
        #expect(again.recovered.entries.map(\.seq) == [1, 2, 3])
    }

    @Test("a batch whose flush failed is refused to its callers and never counted, though its bytes reached the file")
    func failedFlushIsVoided() throws {
        let dir = try Self.directory()
        let failNext = Atomic<Bool>(false)
        do {
            let j = try UsageJournal.open(directory: dir, afterSeq: 0, flush: { fd in
                if failNext.exchange(false, ordering: .relaxed) {
                    errno = EIO
                    return -1
                }
                return fdatasync(fd)
            })
            _ = try j.append([Self.allFields(1), Self.allFields(2)])
            failNext.store(true, ordering: .relaxed)
            #expect(throws: JournalError.self) { try j.append([Self.allFields(3), Self.allFields(4)]) }
            let after = try j.append([Self.allFields(5)])
            #expect(after.map(\.seq) == [6], "seq 5 voids the failed batch's 3 and 4")
        }
        let again = try reopen(dir, afterSeq: 0)
        #expect(again.recovered.entries.map(\.event.id) == ["id-1", "id-2", "id-5"])
    }

    @Test("a second process cannot open a journal that is in use")
    func lockedWhileOpen() throws {
        let dir = try Self.directory()
        let j = try UsageJournal.open(directory: dir, afterSeq: 0)
        #expect(throws: JournalError.self) { try UsageJournal.open(directory: dir, afterSeq: 0, lockWait: .milliseconds(100)) }
        _ = j
    }

    // MARK: The SQLite ledger over its journal

    static func ledgerPath() throws -> String { try directory() + "/ledger.sqlite" }

    @Test("events acknowledged but not yet in the database are stored from the journal when the ledger is opened after a crash")
    func recoversAfterCrash() async throws {
        let path = try Self.ledgerPath()
        let signer = CheckpointSigner(key: Curve25519.Signing.PrivateKey(), interval: 4)
        // The database is told to wait an hour: every event lives in the journal only.
        let ledger = try SQLiteLedger(path: path, checkpoints: signer, options: .init(applyInterval: .seconds(3600)))
        for i in 0..<5 { try await ledger.record(event(i)) }
        try await ledger.caughtUp()
        for i in 5..<23 { try await ledger.record(event(i, tenant: i % 2 == 0 ? "acme" : "globex")) }
        // The files as they are at this moment are what a machine that lost power would hold.
        let crashed = try Self.directory()
        for file in try FileManager.default.contentsOfDirectory(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) {
            try FileManager.default.copyItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path + "/" + file,
                                             toPath: crashed + "/" + file)
        }
        let inFile = try await DatabaseQueue(path: crashed + "/ledger.sqlite").read {
            try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM usage_events")
        }
        #expect(inFile == 5, "the 18 later events are in the journal only")
        let restarted = try SQLiteLedger(path: crashed + "/ledger.sqlite", checkpoints: signer)
        #expect(restarted.recoveredEvents == 18)
        let stored = try await restarted.events(tenant: "acme", after: 0, limit: 100).count
            + restarted.events(tenant: "globex", after: 0, limit: 100).count
        #expect(stored == 23)
        let v = try await LedgerVerifier.verify(restarted, publicKey: signer.publicKey)
        #expect(v.isIntact, "\(v.problems)")
        await restarted.shutdown()
        // Stored once: opening again finds nothing more to store, and the journal was emptied.
        let third = try SQLiteLedger(path: crashed + "/ledger.sqlite", checkpoints: signer)
        #expect(third.recoveredEvents == 0)
        #expect(try await third.events(tenant: "acme", after: 0, limit: 100).count
            + third.events(tenant: "globex", after: 0, limit: 100).count == 23)
        await third.shutdown()
        await ledger.shutdown()
    }

    @Test("a reserved signing is stored as its outcome; one without an outcome at a crash is billed as signed")
    func reservations() async throws {
        let path = try Self.ledgerPath()
        let ledger = try SQLiteLedger(path: path, options: .init(applyInterval: .milliseconds(10)))
        let planned = (1...3).map { event($0, signatures: $0 + 1) }
        var reservations: [UsageReservation] = []
        for e in planned { reservations.append(try #require(try await ledger.reserveSigning(e))) }
        // 1 signs (its event now says how long it took), 2 is refused after all, 3 is still signing.
        var signed = planned[0]
        signed.latencyMicros = 4242
        signed.time = signed.time.addingTimeInterval(0.5)
        try await ledger.fulfil(reservations[0], with: signed)
        var refused = event(2, outcome: .failed)
        refused.id = UsageEvent.attemptID(refused.id, outcome: .failed, time: refused.time)
        try await ledger.release(reservations[1], with: refused)
        try await ledger.record(event(4))
        // Storing stops at the open reservation: nothing after it is stored out of order. (2's
        // refusal comes after 3's reservation in the journal, and so in the chain.)
        try await Task.sleep(for: .milliseconds(200))
        let storedBefore = try await ledger.pool.read {
            try String.fetchAll($0, sql: "SELECT request_id FROM usage_events ORDER BY seq")
        }
        #expect(storedBefore == ["req-1"])

        // What a machine that lost power now would hold: 3 never ended.
        let crashed = try Self.directory()
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        for file in try FileManager.default.contentsOfDirectory(atPath: dir) {
            try FileManager.default.copyItem(atPath: dir + "/" + file, toPath: crashed + "/" + file)
        }
        let restarted = try SQLiteLedger(path: crashed + "/ledger.sqlite")
        let recovered = try await restarted.events(tenant: "acme", after: 0, limit: 100).map(\.event)
        #expect(recovered.map(\.requestID) == ["req-1", "req-3", "req-2", "req-4"])
        #expect(recovered.map(\.outcome) == [.ok, .ok, .failed, .ok])
        #expect(recovered[0].latencyMicros == 4242, "the outcome, not the reservation, is what was stored")
        #expect(recovered[1].signatures == 4)
        #expect(recovered[1].reason == JournalBacklog.openReservationReason)
        let billed = recovered.map(\.signatures).reduce(0, +)
        #expect(billed == 7, "2 signed, 4 billed as signed, 1 recorded plainly")
        await restarted.shutdown()

        // Without the crash, 3's outcome arrives and everything is stored in order.
        var late = planned[2]
        late.latencyMicros = 7
        try await ledger.fulfil(reservations[2], with: late)
        try await ledger.caughtUp()
        let stored = try await ledger.events(tenant: "acme", after: 0, limit: 100).map(\.event)
        #expect(stored.map(\.requestID) == ["req-1", "req-3", "req-2", "req-4"])
        #expect(stored[1].latencyMicros == 7)
        #expect(stored[1].reason == nil)
        await ledger.shutdown()
    }

    @Test("a retry finds the earlier answer while it is still in the journal only, and after it reached the database")
    func retryFoundBeforeStored() async throws {
        let ledger = try SQLiteLedger(path: try Self.ledgerPath(), options: .init(applyInterval: .seconds(3600)))
        var e = event(1, clientChoseID: true)
        e.answer = Data("{\"signatures\":[\"c2ln\"]}".utf8)
        try await ledger.record(e)
        #expect(try await ledger.recordedEvent(id: e.id)?.answer == e.answer)
        let inFile = try await ledger.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM usage_events") }
        #expect(inFile == 0)
        try await ledger.caughtUp()
        #expect(try await ledger.recordedEvent(id: e.id)?.answer == e.answer)
        // A retry recorded again under the same id is billed once.
        try await ledger.record(e)
        let cells = try await ledger.usageCells(tenant: "acme", from: .distantPast, to: .distantFuture, grouping: .outcome,
                                                byDay: false)
        #expect(cells.map(\.billedSignatures).reduce(0, +) == 1)
        await ledger.shutdown()
    }

    @Test("while the database refuses the events, a reader gets an error (not a wait without end) and the events stay in the journal")
    func databaseRefusingEvents() async throws {
        let path = try Self.ledgerPath()
        let ledger = try SQLiteLedger(path: path, options: .init(applyInterval: .milliseconds(20)))
        try await ledger.record(event(1))
        try await ledger.caughtUp()
        try await ledger.pool.write { try $0.execute(sql: "ALTER TABLE journal_position RENAME TO moved_away") }
        for i in 2..<6 { try await ledger.record(event(i)) }
        await #expect(throws: LedgerBehind.self) { try await ledger.caughtUp() }
        let stored = try await ledger.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM usage_events") }
        #expect(stored == 1, "nothing half stored: each transaction is all or nothing")
        // The database takes them again: the next attempt stores all four, once.
        try await ledger.pool.write { try $0.execute(sql: "ALTER TABLE moved_away RENAME TO journal_position") }
        var caughtUp = false
        for _ in 0..<50 where !caughtUp {
            caughtUp = (try? await ledger.caughtUp()) != nil
            if !caughtUp { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(caughtUp)
        #expect(try await ledger.events(tenant: "acme", after: 0, limit: 100).map(\.event.requestID) == (1..<6).map { "req-\($0)" })
        await ledger.shutdown()
    }

    @Test("reads through the ledger see every event acknowledged before them")
    func readsCatchUp() async throws {
        let ledger = try SQLiteLedger(path: try Self.ledgerPath(), options: .init(applyInterval: .seconds(3600)))
        for i in 0..<10 { try await ledger.record(event(i)) }
        #expect(try await ledger.tenants() == ["acme"])
        #expect(try await ledger.events(tenant: "acme", after: 0, limit: 100).count == 10)
        await ledger.shutdown()
    }

    @Test("shutdown stores everything acknowledged and empties the journal")
    func shutdownDrains() async throws {
        let path = try Self.ledgerPath()
        let ledger = try SQLiteLedger(path: path, options: .init(applyInterval: .seconds(3600)))
        for i in 0..<10 { try await ledger.record(event(i)) }
        await ledger.shutdown()
        let n = try await DatabaseQueue(path: path).read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM usage_events") }
        #expect(n == 10)
        let used = try UsageJournal.segmentNames(SQLiteLedger.journalDirectory(for: path)).filter { name in
            (try? Data(contentsOf: URL(fileURLWithPath: name.path)).prefix(16)) == Data(UsageJournal.headerMagic)
        }
        #expect(used.isEmpty, "every event is in the database: no segment is kept")
    }

    @Test("a second gateway on the same SQLite ledger is refused while the first runs")
    func oneProcessPerLedger() async throws {
        let path = try Self.ledgerPath()
        let first = try SQLiteLedger(path: path)
        #expect(throws: JournalError.self) { try SQLiteLedger(path: path, options: .init(lockWait: .milliseconds(100))) }
        await first.shutdown()
    }

    @Test("the ledger's writer threads run as SCHED_BATCH: waking them never preempts a request's thread")
    func writersRunAsBatch() async throws {
        let ledger = try SQLiteLedger(path: try Self.ledgerPath())
        try await ledger.record(event(1))
        var policies: [String: Set<Int>] = [:]
        for tid in try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task") {
            guard let comm = try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8),
                  let stat = try? String(contentsOfFile: "/proc/self/task/\(tid)/stat", encoding: .utf8),
                  let close = stat.range(of: ")", options: .backwards) else { continue }
            let name = comm.trimmingCharacters(in: .whitespacesAndNewlines)
            guard name.hasPrefix("ledger-") else { continue }
            // After the name: field 3 (state) onwards; field 41 is the scheduling policy.
            let fields = stat[close.upperBound...].split(separator: " ")
            policies[name, default: []].insert(fields.count > 38 ? Int(fields[38]) ?? -1 : -1)
        }
        let batch = 3
        #expect(policies["ledger-journal"] == [batch])
        #expect(policies["ledger-apply"] == [batch])
        await ledger.shutdown()
    }

    // MARK: Commit window

    @Test("an operation alone is written at once, whatever the commit delay")
    func aloneIsNotKeptWaiting() async throws {
        let inFlight = OperationsInFlight()
        // A minute's delay, so that a broken window is unmistakable even on a machine that stalls
        // for seconds (a parallel `make test` once took 5.2 s here for everything at once).
        let ledger = try SQLiteLedger(path: try Self.ledgerPath(), options: .init(commitDelay: .seconds(60), inFlight: inFlight))
        let started = ContinuousClock.now
        try await ledger.record(event(1))
        #expect(ContinuousClock.now - started < .seconds(30))
        await ledger.shutdown()
    }

    @Test("a batch waits for operations still under way, and is written as soon as none is left")
    func waitsForOthers() async throws {
        let inFlight = OperationsInFlight()
        let ledger = try SQLiteLedger(path: try Self.ledgerPath(),
                                      options: .init(commitDelay: .milliseconds(300), inFlight: inFlight))
        inFlight.enter()
        var started = ContinuousClock.now
        try await ledger.record(event(1))
        #expect(ContinuousClock.now - started >= .milliseconds(250), "another operation was under way")
        // With a long delay, the window closes when the last operation under way reaches the ledger.
        let slow = try SQLiteLedger(path: try Self.ledgerPath(), options: .init(commitDelay: .seconds(20), inFlight: inFlight))
        started = ContinuousClock.now
        async let first: Void = slow.record(event(2))
        try await Task.sleep(for: .milliseconds(200))
        inFlight.leave()
        try await slow.record(event(3))
        try await first
        #expect(ContinuousClock.now - started < .seconds(10))
        await slow.shutdown()
        await ledger.shutdown()
    }

    @Test("reservations of concurrent slow signings share one flush; a signing that ends or fails is not kept waiting")
    func heldReservations() async throws {
        let inFlight = OperationsInFlight()
        let flushes = Atomic<Int>(0)
        var options = SQLiteLedger.Options(inFlight: inFlight)
        options.flush = { fd in
            flushes.add(1, ordering: .relaxed)
            return fdatasync(fd)
        }
        // A hold of a minute, so that one that never ends is unmistakable on a stalling machine.
        options.reservationHold = .seconds(60)
        let ledger = try SQLiteLedger(path: try Self.ledgerPath(), options: options)
        // vendor-a's signings take about 100 s, and others are under way: hold for the full minute.
        ledger.schedule.signed(upstream: "vendor-a", took: .seconds(100))
        inFlight.enter()
        inFlight.enter()
        let before = flushes.load(ordering: .relaxed)
        let started = ContinuousClock.now
        let first = try #require(ledger.reserveSigning(event(1)))
        let second = try #require(ledger.reserveSigning(event(2)))
        try await Task.sleep(for: .milliseconds(200))
        #expect(flushes.load(ordering: .relaxed) == before, "both are held back")
        // 1's signing ends: both reservations go to disk in one flush, at once.
        try await first.confirm()
        try await second.confirm()
        #expect(flushes.load(ordering: .relaxed) == before + 1)
        #expect(ContinuousClock.now - started < .seconds(30))
        try await ledger.fulfil(first, with: event(1))
        try await ledger.fulfil(second, with: event(2))

        // 3's signing fails while its reservation is held: the release takes it along, at once.
        let third = try #require(ledger.reserveSigning(event(3)))
        let failedAt = ContinuousClock.now
        var failed = event(3, outcome: .failed)
        failed.id = UsageEvent.attemptID(failed.id, outcome: .failed, time: failed.time)
        try await ledger.release(third, with: failed)
        #expect(ContinuousClock.now - failedAt < .seconds(30))
        #expect(flushes.load(ordering: .relaxed) == before + 2)

        // One running alone is never held back.
        inFlight.leave()
        let alone = try #require(ledger.reserveSigning(event(4)))
        try await Task.sleep(for: .milliseconds(200))
        #expect(flushes.load(ordering: .relaxed) == before + 3)
        try await alone.confirm()
        try await ledger.fulfil(alone, with: event(4))
        inFlight.leave()

        try await ledger.caughtUp()
        let stored = try await ledger.events(tenant: "acme", after: 0, limit: 10).map(\.event)
        #expect(stored.map(\.requestID) == ["req-1", "req-2", "req-3", "req-4"])
        #expect(stored.map(\.outcome) == [.ok, .ok, .failed, .ok])
        await ledger.shutdown()
    }
}
