namespace TauCluster.Engine;

/// <summary>The element types a tensor is stored in: in a file, and in the weight panels the kernels read.</summary>
public enum TensorDType { F32, F16, BF16 }

public static class TensorDTypes
{
    public static int ElementSize(this TensorDType type) => type == TensorDType.F32 ? sizeof(float) : sizeof(ushort);

    /// <summary>Parses <c>f32</c>, <c>f16</c> or <c>bf16</c> (any case); null when it is none of them.</summary>
    public static TensorDType? Parse(string text) => text.ToLowerInvariant() switch
    {
        "f32" => TensorDType.F32,
        "f16" => TensorDType.F16,
        "bf16" => TensorDType.BF16,
        _ => null,
    };

    /// <summary>The 16-bit pattern of the value nearest to <paramref name="value"/> (ties to even), or, when
    /// <paramref name="exact"/>, of the value itself, which must then be representable.</summary>
    public static ushort Narrow(this TensorDType type, float value, bool exact = false)
    {
        ushort bits = type switch
        {
            TensorDType.F16 => BitConverter.HalfToUInt16Bits((Half)value),
            TensorDType.BF16 => NearestBFloat16(value),
            _ => throw new ArgumentException("F32 is not a 16-bit type", nameof(type)),
        };
        if (exact && !float.IsNaN(value) && type.Widen(bits) != value)
            throw new ArgumentException($"{value:R} is not a {type} value");
        return bits;
    }

    /// <summary>The F32 value of a 16-bit pattern: exact, since F16 and BF16 are subsets of F32.</summary>
    public static float Widen(this TensorDType type, ushort bits) => type switch
    {
        TensorDType.F16 => (float)BitConverter.UInt16BitsToHalf(bits),
        TensorDType.BF16 => BitConverter.Int32BitsToSingle(bits << 16),
        _ => throw new ArgumentException("F32 is not a 16-bit type", nameof(type)),
    };

    /// <summary>The value of this type nearest to <paramref name="value"/>, as F32.</summary>
    public static float Round(this TensorDType type, float value) => type == TensorDType.F32 ? value : type.Widen(type.Narrow(value));

    private static ushort NearestBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);   // stays a (quiet) NaN however the low bits fall
        return (ushort)((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
    }
}
