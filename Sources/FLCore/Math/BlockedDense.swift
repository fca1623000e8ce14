/// Dense layers over rows held eight at a time, transposed: a block of eight
/// rows stores unit `u` of every row as one `SIMD8` (`[block][unit][lane]`),
/// so a layer's output for eight rows and eight units is eight vector
/// accumulators, with no horizontal sums and every weight loaded once per
/// block. The evaluator of candidate models (`ClassLossEvaluator`) runs
/// every coalition of a round's credit game through these kernels.
public enum BlockedDense {
    public typealias V = SIMD8<Float>
    public static let lanes = 8

    /// The blocks needed for `rows` rows.
    @inlinable
    public static func blocks(rows: Int) -> Int { (rows + lanes - 1) / lanes }

    /// `rows × width` row-major values in the blocked layout (padding lanes are 0).
    public static func transpose(_ x: [Float], rows: Int, width: Int) -> [Float] {
        precondition(x.count == rows * width, "values and shape disagree")
        var out = [Float](repeating: 0, count: max(1, blocks(rows: rows)) * width * lanes)
        for r in 0..<rows {
            let b = r / lanes, l = r % lanes
            for u in 0..<width { out[(b * width + u) * lanes + l] = x[r * width + u] }
        }
        return out
    }

    /// One dense layer for `blocks` blocks: out[u] = b[u] + Σ_i x[i]·w[u][i]
    /// (the sum in input order), ReLU when `relu`. `w` is row-major
    /// [outputs][inputs]; `input` and `output` are blocked.
    public static func layer(weights w: UnsafePointer<Float>, bias: UnsafePointer<Float>, inputs ni: Int, outputs no: Int,
                             input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, blocks: Int, relu: Bool) {
        let tiled = no - no % 8
        for blk in 0..<blocks {
            let x = input + blk * ni * lanes, y = output + blk * no * lanes
            for u in stride(from: 0, to: tiled, by: 8) { tile8(w + u * ni, bias + u, ni, x, y + u * lanes, relu) }
        }
        // The last units (fewer than eight): one at a time, four blocks at a
        // time, so that four independent sums hide the adds' latency.
        for u in tiled..<no {
            let wr = w + u * ni
            var blk = 0
            while blk < blocks {
                let x0 = input + blk * ni * lanes
                let x1 = blk + 1 < blocks ? x0 + ni * lanes : x0, x2 = blk + 2 < blocks ? x0 + 2 * ni * lanes : x0
                let x3 = blk + 3 < blocks ? x0 + 3 * ni * lanes : x0
                var a0 = V(repeating: bias[u]), a1 = a0, a2 = a0, a3 = a0
                for i in 0..<ni {
                    let c = V(repeating: wr[i]), o = i * lanes
                    a0 = a0 + load(x0 + o) * c; a1 = a1 + load(x1 + o) * c
                    a2 = a2 + load(x2 + o) * c; a3 = a3 + load(x3 + o) * c
                }
                if relu { rectify(&a0); rectify(&a1); rectify(&a2); rectify(&a3) }
                let step = no * lanes
                store(a0, output + blk * step + u * lanes)
                if blk + 1 < blocks { store(a1, output + (blk + 1) * step + u * lanes) }
                if blk + 2 < blocks { store(a2, output + (blk + 2) * step + u * lanes) }
                if blk + 3 < blocks { store(a3, output + (blk + 3) * step + u * lanes) }
                blk += 4
            }
        }
    }

    @inline(__always)
    static func tile8(_ w: UnsafePointer<Float>, _ bias: UnsafePointer<Float>, _ ni: Int, _ x: UnsafePointer<Float>,
                      _ y: UnsafeMutablePointer<Float>, _ relu: Bool) {
        var a0 = V(repeating: bias[0]), a1 = V(repeating: bias[1]), a2 = V(repeating: bias[2]), a3 = V(repeating: bias[3])
        var a4 = V(repeating: bias[4]), a5 = V(repeating: bias[5]), a6 = V(repeating: bias[6]), a7 = V(repeating: bias[7])
        let w1 = w + ni, w2 = w + 2 * ni, w3 = w + 3 * ni, w4 = w + 4 * ni, w5 = w + 5 * ni, w6 = w + 6 * ni, w7 = w + 7 * ni
        for i in 0..<ni {
            let v = load(x + i * lanes)
            a0 = a0 + v * V(repeating: w[i]); a1 = a1 + v * V(repeating: w1[i])
            a2 = a2 + v * V(repeating: w2[i]); a3 = a3 + v * V(repeating: w3[i])
            a4 = a4 + v * V(repeating: w4[i]); a5 = a5 + v * V(repeating: w5[i])
            a6 = a6 + v * V(repeating: w6[i]); a7 = a7 + v * V(repeating: w7[i])
        }
        if relu {
            rectify(&a0); rectify(&a1); rectify(&a2); rectify(&a3)
            rectify(&a4); rectify(&a5); rectify(&a6); rectify(&a7)
        }
        store(a0, y); store(a1, y + 8); store(a2, y + 16); store(a3, y + 24)
        store(a4, y + 32); store(a5, y + 40); store(a6, y + 48); store(a7, y + 56)
    }

    /// ReLU, lane by lane.
    @inline(__always)
    static func rectify(_ a: inout V) { a.replace(with: V(), where: a .< 0) }

    /// The softmax over `classes` units of every lane of one block, in place
    /// (max subtracted first; `exp` below).
    @inline(__always)
    public static func softmax(_ z: UnsafeMutablePointer<Float>, classes k: Int) {
        guard k > 0 else { return }
        var m = load(z)
        for c in 1..<max(k, 1) { let v = load(z + c * lanes); m.replace(with: v, where: m .< v) }
        var s = V()
        for c in 0..<k {
            let e = exp(load(z + c * lanes) - m)
            store(e, z + c * lanes)
            s = s + e
        }
        let inv = V(repeating: 1) / s
        for c in 0..<k { store(load(z + c * lanes) * inv, z + c * lanes) }
    }

    /// e^x lane by lane: Cody–Waite reduction by ln 2 and a degree-6
    /// polynomial (Cephes `expf`), within 2 ulp of the exact value on
    /// [−87.3, 88]; inputs are clamped to that range (below it the
    /// result is the smallest normal float, e^−87.3).
    @inlinable @inline(__always)
    public static func exp(_ input: V) -> V {
        var x = input
        let low = V(repeating: -87.33654), high = V(repeating: 88.0)
        x.replace(with: low, where: x .< low)  // NaN stays NaN
        x.replace(with: high, where: x .> high)
        let magic = V(repeating: 12_582_912)  // 1.5·2²³: adding it rounds to an integer in the low mantissa bits
        let shifted = x * V(repeating: 1.442_695_04) + magic
        let n = shifted - magic
        var r = x - n * V(repeating: 0.693_359_375)
        r = r - n * V(repeating: -2.121_944_4e-4)
        var p = V(repeating: 1.987_569_15e-4)
        p = p * r + V(repeating: 1.398_199_95e-3)
        p = p * r + V(repeating: 8.333_451_9e-3)
        p = p * r + V(repeating: 4.166_579_59e-2)
        p = p * r + V(repeating: 1.666_666_55e-1)
        p = p * r + V(repeating: 5.000_000_12e-1)
        p = p * (r * r) + r + V(repeating: 1)
        let bits = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
        let scale = unsafeBitCast((bits &+ 127) &<< 23, to: V.self)
        return p * scale
    }

    /// ln x lane by lane for normal positive finite x (Cephes `logf`: x =
    /// 2ᵉ·(1 + m) with 1 + m in [√½, √2), a degree-8 polynomial in m),
    /// within 2 ulp; NaN stays NaN. Other inputs (0, subnormals, negatives,
    /// +∞) give meaningless values: callers clamp first, as the evaluator
    /// clamps probabilities to [1e-15, 1].
    @inlinable @inline(__always)
    public static func log(_ x: V) -> V {
        let bits = unsafeBitCast(x, to: SIMD8<Int32>.self)
        var m = unsafeBitCast((bits & 0x007F_FFFF) | 0x3F00_0000, to: V.self)  // in [0.5, 1)
        let magic = V(repeating: 12_582_912)  // 1.5·2²³: an Int32 added to its bits reads back as that integer
        var e = unsafeBitCast(((bits &>> 23) &- 126) &+ unsafeBitCast(magic, to: SIMD8<Int32>.self), to: V.self) - magic
        let small = m .< V(repeating: 0.707_106_781_186_547_524)
        e.replace(with: e - 1, where: small)
        m.replace(with: m + m, where: small)
        m = m - 1
        let z = m * m
        var y = V(repeating: 7.037_683_629_2e-2)
        y = y * m - V(repeating: 1.151_461_031_0e-1)
        y = y * m + V(repeating: 1.167_699_874_0e-1)
        y = y * m - V(repeating: 1.242_014_084_6e-1)
        y = y * m + V(repeating: 1.424_932_278_7e-1)
        y = y * m - V(repeating: 1.666_805_766_5e-1)
        y = y * m + V(repeating: 2.000_071_476_5e-1)
        y = y * m - V(repeating: 2.499_999_399_3e-1)
        y = y * m + V(repeating: 3.333_333_117_4e-1)
        y = y * m * z
        y = y + e * V(repeating: -2.121_944_4e-4)
        y = y - z * V(repeating: 0.5)
        var r = m + y + e * V(repeating: 0.693_359_375)
        r.replace(with: x, where: x .!= x)
        return r
    }

    @inlinable @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }

    @inlinable @inline(__always)
    static func load(_ p: UnsafeMutablePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }

    @inlinable @inline(__always)
    static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }
}
