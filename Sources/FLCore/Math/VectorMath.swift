/// SIMD kernels over Float32 buffers. Each processes eight lanes at a time and
/// finishes the tail with scalar code; none allocates.
public enum VectorMath {
    public typealias V = SIMD8<Float>

    /// Σ a[i]·b[i].
    @inlinable
    public static func dot(_ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>) -> Float {
        precondition(a.count == b.count, "length mismatch")
        let n = a.count
        guard n > 0, let pa = a.baseAddress, let pb = b.baseAddress else { return 0 }
        var acc0 = V(), acc1 = V()
        var i = 0
        while i + 16 <= n {
            acc0 = acc0 + load(pa + i) * load(pb + i)
            acc1 = acc1 + load(pa + i + 8) * load(pb + i + 8)
            i += 16
        }
        if i + 8 <= n {
            acc0 = acc0 + load(pa + i) * load(pb + i)
            i += 8
        }
        var s = (acc0 + acc1).sum()
        while i < n { s += pa[i] * pb[i]; i += 1 }
        return s
    }

    /// Four dot products of `a` with `b0`…`b3` (`count` elements each) in
    /// one pass over `a`; each equals `dot(a, bi)` bit for bit (the same
    /// operations in the same order per output).
    @inline(__always)
    public static func dot4(_ pa: UnsafePointer<Float>, _ b0: UnsafePointer<Float>, _ b1: UnsafePointer<Float>, _ b2: UnsafePointer<Float>,
                            _ b3: UnsafePointer<Float>, count n: Int) -> (Float, Float, Float, Float) {
        var a0 = V(), a1 = V(), c0 = V(), c1 = V(), e0 = V(), e1 = V(), g0 = V(), g1 = V()
        var i = 0
        while i + 16 <= n {
            let x0 = load(pa + i), x1 = load(pa + i + 8)
            a0 = a0 + x0 * load(b0 + i); a1 = a1 + x1 * load(b0 + i + 8)
            c0 = c0 + x0 * load(b1 + i); c1 = c1 + x1 * load(b1 + i + 8)
            e0 = e0 + x0 * load(b2 + i); e1 = e1 + x1 * load(b2 + i + 8)
            g0 = g0 + x0 * load(b3 + i); g1 = g1 + x1 * load(b3 + i + 8)
            i += 16
        }
        if i + 8 <= n {
            let x0 = load(pa + i)
            a0 = a0 + x0 * load(b0 + i); c0 = c0 + x0 * load(b1 + i); e0 = e0 + x0 * load(b2 + i); g0 = g0 + x0 * load(b3 + i)
            i += 8
        }
        var s0 = (a0 + a1).sum(), s1 = (c0 + c1).sum(), s2 = (e0 + e1).sum(), s3 = (g0 + g1).sum()
        while i < n {
            let x = pa[i]
            s0 += x * b0[i]; s1 += x * b1[i]; s2 += x * b2[i]; s3 += x * b3[i]
            i += 1
        }
        return (s0, s1, s2, s3)
    }

    /// y[i] += alpha·x[i].
    @inlinable
    public static func axpy(_ alpha: Float, _ x: UnsafeBufferPointer<Float>, _ y: UnsafeMutableBufferPointer<Float>) {
        precondition(x.count == y.count, "length mismatch")
        let n = x.count
        guard n > 0, let px = x.baseAddress, let py = y.baseAddress else { return }
        let va = V(repeating: alpha)
        var i = 0
        while i + 8 <= n {
            store(load(py + i) + va * load(px + i), py + i)
            i += 8
        }
        while i < n { py[i] += alpha * px[i]; i += 1 }
    }

    /// x[i] *= alpha.
    @inlinable
    public static func scale(_ x: UnsafeMutableBufferPointer<Float>, by alpha: Float) {
        guard let p = x.baseAddress else { return }
        let n = x.count
        let va = V(repeating: alpha)
        var i = 0
        while i + 8 <= n { store(load(p + i) * va, p + i); i += 8 }
        while i < n { p[i] *= alpha; i += 1 }
    }

    /// Σ x[i]².
    @inlinable
    public static func squaredNorm(_ x: UnsafeBufferPointer<Float>) -> Float { dot(x, x) }

    /// Σ (a[i] − b[i])², accumulated in Double for long vectors.
    @inlinable
    public static func squaredDistance(_ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>) -> Double {
        precondition(a.count == b.count, "length mismatch")
        let n = a.count
        guard n > 0, let pa = a.baseAddress, let pb = b.baseAddress else { return 0 }
        var total = 0.0
        var i = 0
        while i < n {  // blocks of 4096 in Float, summed in Double
            let end = min(n, i + 4096)
            var acc = V()
            while i + 8 <= end {
                let d = load(pa + i) - load(pb + i)
                acc = acc + d * d
                i += 8
            }
            var s = Double(acc.sum())
            while i < end { let d = pa[i] - pb[i]; s += Double(d * d); i += 1 }
            total += s
        }
        return total
    }

    /// True when every element is finite (no NaN or ±infinity).
    @inlinable
    public static func allFinite(_ x: UnsafeBufferPointer<Float>) -> Bool {
        guard let p = x.baseAddress else { return true }
        let n = x.count
        var probe = V()
        var i = 0
        while i + 8 <= n { probe += load(p + i) * 0; i += 8 }
        var s = probe.sum()
        while i < n { s += p[i] * 0; i += 1 }
        return s == 0
    }

    @inlinable @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> V {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }

    @inlinable @inline(__always)
    static func load(_ p: UnsafeMutablePointer<Float>) -> V {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }

    @inlinable @inline(__always)
    static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    }
}
