namespace TauCluster.Engine;

/// <summary>
/// A matrix inside a flat array: element (i, j) is <c>Data[Offset + i·RowStride + j·ColStride]</c>.
/// A transposed view swaps the strides and copies nothing.
/// </summary>
public readonly record struct Matrix<T>(T[] Data, int Offset, int Rows, int Cols, int RowStride, int ColStride)
{
    /// <summary>A row-major [rows, cols] matrix starting at <paramref name="offset"/>.</summary>
    public static Matrix<T> Dense(T[] data, int rows, int cols, int offset = 0) => new(data, offset, rows, cols, cols, 1);

    public Matrix<T> Transposed => new(Data, Offset, Cols, Rows, ColStride, RowStride);

    /// <summary>The [rows, cols] block starting at (row, col).</summary>
    public Matrix<T> Slice(int row, int rows, int col, int cols) => new(Data, Offset + row * RowStride + col * ColStride, rows, cols, RowStride, ColStride);

    public ref T this[int i, int j] => ref Data[Offset + i * RowStride + j * ColStride];
}
