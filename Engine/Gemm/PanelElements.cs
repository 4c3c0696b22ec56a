using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace TauCluster.Engine;

/// <summary>
/// How a weight panel's element widens to F32 inside a GEMM micro-kernel: one value, or 8 or 16 consecutive ones.
/// Every widening is exact (F16 and BF16 are subsets of F32), so a kernel on 16-bit panels computes the same bits as on
/// the F32 panels of the widened values, and reads half the bytes.
/// </summary>
internal unsafe interface IPanelElement<TSelf> where TSelf : unmanaged, IPanelElement<TSelf>
{
    static abstract TensorDType Type { get; }
    static abstract float Widen(TSelf* p);
    static abstract Vector256<float> Load256(TSelf* p);
    static abstract Vector512<float> Load512(TSelf* p);
}

/// <summary>The element types are their stored bits and nothing else: a panel of them is the stored array, viewed.</summary>
[StructLayout(LayoutKind.Sequential, Size = sizeof(float))]
internal readonly struct F32Element : IPanelElement<F32Element>
{
    public static TensorDType Type => TensorDType.F32;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe float Widen(F32Element* p) => *(float*)p;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector256<float> Load256(F32Element* p) => Vector256.Load((float*)p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector512<float> Load512(F32Element* p) => Vector512.Load((float*)p);
}

/// <summary>BF16 is the upper half of an F32: widening is a 16-bit shift.</summary>
[StructLayout(LayoutKind.Sequential, Size = sizeof(ushort))]
internal readonly struct BF16Element : IPanelElement<BF16Element>
{
    public static TensorDType Type => TensorDType.BF16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe float Widen(BF16Element* p) => BitConverter.Int32BitsToSingle(*(ushort*)p << 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector256<float> Load256(BF16Element* p) =>
        Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((ushort*)p), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector512<float> Load512(BF16Element* p) =>
        Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)p)), 16).AsSingle();
}

/// <summary>
/// F16 widens in software (.NET exposes no vcvtph2ps). The half is sign-extended and shifted so that its sign, exponent
/// and mantissa land in F32's fields, and an integer add rebiases the exponent (by 127 − 15 = 112):
/// exact for normal halves, with no floating-point operation. A vector that holds a zero or subnormal (exponent 0) takes
/// a second, exact path, ±mantissa · 2^−24 through an integer conversion, rather than letting F32 subnormals into a
/// multiply, which costs a microcode assist each on these cores. Infinities and NaNs would come out finite, so F16
/// panels hold finite values only (<see cref="PackedMatrix"/> refuses others, and a model file with a non-finite weight
/// does not load).
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = sizeof(ushort))]
internal readonly struct F16Element : IPanelElement<F16Element>
{
    private const int SignExponentMantissa = unchecked((int)0x8fffe000);   // of a sign-extended half shifted left by 13
    private const int Rebias = 112 << 23;
    private const int HalfExponent = 0x7c00, HalfMantissa = 0x3ff, Sign = unchecked((int)0x80000000);
    private const float SubnormalUnit = 5.9604644775390625e-8f;              // 2^−24

    public static TensorDType Type => TensorDType.F16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe float Widen(F16Element* p) => (float)BitConverter.UInt16BitsToHalf(*(ushort*)p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector256<float> Load256(F16Element* p)
    {
        var h = Avx2.ConvertToVector256Int32((short*)p);
        var normal = ((h << 13) & Vector256.Create(SignExponentMantissa)) + Vector256.Create(Rebias);
        var tiny = Vector256.Equals(h & Vector256.Create(HalfExponent), Vector256<int>.Zero);
        if (tiny == Vector256<int>.Zero) return normal.AsSingle();
        var subnormal = Vector256.ConvertToSingle(h & Vector256.Create(HalfMantissa)) * Vector256.Create(SubnormalUnit);
        return Vector256.ConditionalSelect(tiny.AsSingle(), (subnormal.AsInt32() | (normal & Vector256.Create(Sign))).AsSingle(), normal.AsSingle());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector512<float> Load512(F16Element* p)
    {
        var h = Avx512F.ConvertToVector512Int32(Vector256.Load((short*)p));
        var normal = ((h << 13) & Vector512.Create(SignExponentMantissa)) + Vector512.Create(Rebias);
        var exponent = h & Vector512.Create(HalfExponent);
        if (!Vector512.EqualsAny(exponent, Vector512<int>.Zero)) return normal.AsSingle();
        var subnormal = Vector512.ConvertToSingle(h & Vector512.Create(HalfMantissa)) * Vector512.Create(SubnormalUnit);
        return Vector512.ConditionalSelect(Vector512.Equals(exponent, Vector512<int>.Zero).AsSingle(),
            (subnormal.AsInt32() | (normal & Vector512.Create(Sign))).AsSingle(), normal.AsSingle());
    }
}
