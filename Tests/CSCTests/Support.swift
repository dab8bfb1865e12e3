import CSC
import Foundation
import Testing

/// Test vectors shared by the CSC tests: raw digests and their base64, as a client would send them.
enum Vector {
    static let h1 = Data(repeating: 0x11, count: 32)
    static let h2 = Data(repeating: 0x22, count: 32)
    static let h384 = Data(repeating: 0x33, count: 48)
    static let b1 = h1.base64EncodedString()
    static let b2 = h2.base64EncodedString()

    static let sha256 = HashAlgorithm.sha256.oid
    static let sha384 = HashAlgorithm.sha384.oid

    /// RSASSA-PSS parameters, SHA-256 / MGF1-SHA-256 / salt 32 (CSC-API.md §6).
    static let pssSHA256Params =
        "MDSgDzANBglghkgBZQMEAgEFAKEcMBoGCSqGSIb3DQEBCDANBglghkgBZQMEAgEFAKIDAgEg"
}

/// A wire body as a client or upstream would send it.
func wire(_ json: String) throws -> JSONObject {
    try JSONObject(parsing: Data(json.utf8))
}

/// The same body as a plain JSON value, for comparing what a codec encodes.
func wireValue(_ json: String) throws -> JSONValue {
    try JSONValue.parse(Data(json.utf8))
}

extension Data {
    init(hex: String) {
        var bytes = [UInt8]()
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            bytes.append(UInt8(hex[i..<j], radix: 16)!)
            i = j
        }
        self.init(bytes)
    }
}

func hexRepeat(_ byte: String, _ n: Int) -> String { String(repeating: byte, count: n) }
