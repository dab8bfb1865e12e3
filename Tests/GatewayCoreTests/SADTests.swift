import CSC
import Foundation
@testable import GatewayCore
import Testing

// Invariant 3 (DESIGN.md): a gateway SAD works only for what it was issued for, within its
// budget and (SCAL 2) only for the hashes it covers; the upstream SAD never leaves in clear.

private let upstreamSAD = "UPSTREAM-SAD-do-not-leak-0123456789"

private func claims(numSignatures: Int = 5, hashes: [String]? = nil, id: String = UUID().uuidString) -> SADClaims {
    SADClaims(id: id, tenantID: "acme", clientID: "acme-app", credentialID: "acme-rsa", upstreamSAD: upstreamSAD,
              expires: 1_700_003_600, upstreamExpires: 1_700_003_600, numSignatures: numSignatures,
              hashAlgorithm: HashAlgorithm.sha256.oid, hashes: hashes)
}

@Suite("SADSeal: what a client holds, it can neither read nor change")
struct SADSealTests {
    let seal = SADSeal.randomKey()

    @Test("seal then open gives back the same claims")
    func roundTrip() throws {
        let c = claims(hashes: ["aGFzaDE=", "aGFzaDI="])
        let sad = try seal.seal(c)
        #expect(sad.hasPrefix("gsad1."))
        #expect(try seal.open(sad) == c)
    }

    @Test("the sealed SAD does not carry the upstream SAD in clear, raw or base64")
    func upstreamSADNotInClear() throws {
        let sad = try seal.seal(claims())
        let b64 = Data(upstreamSAD.utf8).base64EncodedString()
        let b64url = b64.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        for form in [upstreamSAD, b64, b64url, String(b64url.dropLast(2)), "UPSTREAM-SAD"] {
            #expect(!sad.contains(form))
        }
        // Nor does a base64 decoding of the sealed text reveal it.
        let body = String(sad.dropFirst("gsad1.".count)).replacingOccurrences(of: "-", with: "+")
            .replacingOccurrences(of: "_", with: "/")
        let padded = body + String(repeating: "=", count: (4 - body.count % 4) % 4)
        let bytes = try #require(Data(base64Encoded: padded))
        #expect(String(decoding: bytes, as: UTF8.self).contains(upstreamSAD) == false)
    }

    @Test("two seals of the same claims differ (fresh nonce), both open")
    func freshNonce() throws {
        let c = claims()
        let a = try seal.seal(c), b = try seal.seal(c)
        #expect(a != b)
        #expect(try seal.open(a) == c)
        #expect(try seal.open(b) == c)
    }

    @Test("a tampered, truncated, foreign or unprefixed SAD is 400 'Invalid parameter SAD'", arguments: [
        "flip a character in the middle", "truncate", "drop the last character", "seal under another key",
        "another prefix", "no prefix", "prefix only", "empty", "not base64",
    ])
    func refused(_ how: String) throws {
        let sad = try seal.seal(claims())
        // The genuine SAD opened (and kept as opened) first: its neighbours must still be refused.
        #expect(try seal.open(sad) == seal.open(sad))
        let bad: String
        switch how {
        case "flip a character in the middle":
            var chars = Array(sad)
            let i = chars.count / 2
            chars[i] = chars[i] == "A" ? "B" : "A"
            bad = String(chars)
        case "truncate": bad = String(sad.dropLast(8))
        case "drop the last character": bad = String(sad.dropLast())
        case "seal under another key": bad = try SADSeal.randomKey().seal(claims())
        case "another prefix": bad = "gsad2." + sad.dropFirst(6)
        case "no prefix": bad = String(sad.dropFirst(6))
        case "prefix only": bad = "gsad1."
        case "empty": bad = ""
        default: bad = "gsad1.!!!not*base64!!!"
        }
        let error = try #require(throws: CSCError.self) { try seal.open(bad) }
        #expect(error == .invalidRequest("Invalid parameter SAD"))
        #expect(error.status == 400)
    }

    @Test("opened SADs are kept up to a bound, and what was never opened successfully is never kept")
    func openedBound() throws {
        let cache = OpenedSADs<Int>(capacity: 3)
        for i in 0..<3 { cache["sad-\(i)"] = i }
        #expect(cache["sad-2"] == 2)
        cache["sad-3"] = 3
        #expect(cache["sad-3"] == 3)
        #expect((0..<3).allSatisfy { cache["sad-\($0)"] == nil }, "full: started again")
        let forged = "gsad1." + String(repeating: "A", count: 80)
        #expect(throws: CSCError.self) { try seal.open(forged) }
        #expect(throws: CSCError.self) { try seal.open(forged) }
    }

    @Test("a key from base64 text must be exactly 32 bytes")
    func base64Key() throws {
        let key = Data(repeating: 7, count: 32).base64EncodedString()
        let a = try #require(SADSeal(base64Key: key + "\n"))
        let b = try #require(SADSeal(base64Key: key))
        #expect(try b.open(a.seal(claims())).upstreamSAD == upstreamSAD)
        #expect(SADSeal(base64Key: Data(repeating: 7, count: 16).base64EncodedString()) == nil)
        #expect(SADSeal(base64Key: "not base64") == nil)
    }
}

@Suite("SADUsage: a SAD signs at most what it was authorized for")
struct SADUsageTests {
    @Test("the budget is consumed exactly")
    func budgetExact() async throws {
        let usage = SADUsage()
        let c = claims(numSignatures: 5, id: usage.newSADID())
        #expect(await usage.left(c) == 5)
        try await usage.consume(c, hashes: ["a", "b"])
        #expect(await usage.left(c) == 3)
        try await usage.consume(c, hashes: ["c", "d", "e"])
        #expect(await usage.left(c) == 0)
        await #expect(throws: CSCError.invalidRequest("Invalid parameter SAD: its signatures are used up")) {
            try await usage.consume(c, hashes: ["f"])
        }
    }

    @Test("over budget is refused without consuming anything")
    func overBudgetRefusedWithoutConsuming() async throws {
        let usage = SADUsage()
        let c = claims(numSignatures: 3, id: usage.newSADID())
        try await usage.consume(c, hashes: ["a"])
        await #expect(throws: CSCError.invalidRequest("Numbers of signatures is too high")) {
            try await usage.consume(c, hashes: ["b", "c", "d"])
        }
        #expect(await usage.left(c) == 2)
        try await usage.consume(c, hashes: ["b", "c"])
        #expect(await usage.left(c) == 0)
    }

    @Test("SCAL 2: the hashes are a multiset — [h1,h2] allows h1 once and h2 once, nothing more")
    func scal2Multiset() async throws {
        let usage = SADUsage()
        let c = claims(numSignatures: 2, hashes: ["h1", "h2"], id: usage.newSADID())
        await #expect(throws: CSCError.invalidRequest("Hash is not authorized by the SAD")) {
            try await usage.consume(c, hashes: ["h1", "h1"])
        }
        #expect(await usage.left(c) == 2)
        await #expect(throws: CSCError.invalidRequest("Hash is not authorized by the SAD")) {
            try await usage.consume(c, hashes: ["h3"])
        }
        try await usage.consume(c, hashes: ["h1"])
        await #expect(throws: CSCError.invalidRequest("Hash is not authorized by the SAD")) {
            try await usage.consume(c, hashes: ["h1"])
        }
        try await usage.consume(c, hashes: ["h2"])
        for anything in [["h1"], ["h2"], ["h3"]] {
            await #expect(throws: CSCError.self) { try await usage.consume(c, hashes: anything) }
        }
        #expect(await usage.left(c) == 0)
    }

    @Test("SCAL 2: a hash authorized twice may be signed twice")
    func scal2Duplicates() async throws {
        let usage = SADUsage()
        let c = claims(numSignatures: 2, hashes: ["h1", "h1"], id: usage.newSADID())
        try await usage.consume(c, hashes: ["h1", "h1"])
        #expect(await usage.left(c) == 0)
    }

    @Test("a refund (failed upstream call) restores count and hashes")
    func refundRestores() async throws {
        let usage = SADUsage()
        let c = claims(numSignatures: 2, hashes: ["h1", "h2"], id: usage.newSADID())
        try await usage.consume(c, hashes: ["h1"])
        await usage.refund(c, hashes: ["h1"])
        #expect(await usage.left(c) == 2)
        try await usage.consume(c, hashes: ["h1", "h2"])
        #expect(await usage.left(c) == 0)
    }

    @Test("retire (extendTransaction) hands over what is left and makes the old SAD unusable")
    func retire() async throws {
        let usage = SADUsage()
        let c = claims(numSignatures: 4, id: usage.newSADID())
        try await usage.consume(c, hashes: ["a"])
        #expect(try await usage.retire(c) == 3)
        #expect(await usage.left(c) == 0)
        await #expect(throws: CSCError.invalidRequest("Invalid parameter SAD: its signatures are used up")) {
            try await usage.consume(c, hashes: ["b"])
        }
        // Retiring it again hands over nothing: the remainder moved to the new SAD once.
        #expect(try await usage.retire(c) == 0)
    }

    @Test("a SAD whose budget an earlier process kept is refused as expired, not trusted with a fresh budget")
    func earlierProcess() async throws {
        let before = SADUsage(), after = SADUsage()
        let c = claims(numSignatures: 2, id: before.newSADID())
        try await before.consume(c, hashes: ["a", "b"])
        await #expect(throws: CSCError.invalidRequest("SAD expired")) { try await after.consume(c, hashes: ["a"]) }
        await #expect(throws: CSCError.invalidRequest("SAD expired")) { _ = try await after.retire(c) }
    }

    @Test("SADs are counted separately by id")
    func separateIDs() async throws {
        let usage = SADUsage()
        let a = claims(numSignatures: 1, id: usage.newSADID()), b = claims(numSignatures: 1, id: usage.newSADID())
        try await usage.consume(a, hashes: ["x"])
        try await usage.consume(b, hashes: ["x"])
        #expect(await usage.left(a) == 0)
        #expect(await usage.left(b) == 0)
    }

    @Test("200 concurrent signatures against a budget of 50: exactly 50 succeed")
    func concurrentConsume() async {
        let usage = SADUsage()
        let c = claims(numSignatures: 50, id: usage.newSADID())
        let succeeded = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<200 {
                group.addTask {
                    do { try await usage.consume(c, hashes: ["h\(i)"]); return true } catch { return false }
                }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(succeeded == 50)
        #expect(await usage.left(c) == 0)
    }
}
