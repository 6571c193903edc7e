// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @notice BlockFlow's median scoring (Mugunthan, Rahman, Kagal 2020) in 18-decimal fixed
/// point (1e18 = score 1.0). Row i of a score matrix holds the scores evaluator i gave;
/// column j is participant j's model.
///   model score      m_j = lower median of column j (sorted, index (n-1)/2);
///   agreement        a_ij = (1/2 - d)/(1/2 + d) with d = |S_ij - m_j|, 0 when d >= 1/2;
///   evaluator score  A_i = min_j a_ij;
///   overall score    O_j = min(m_j / max m, A_j / max A) (square matrices: every agent
///                    is both a participant and an evaluator, as in BlockFlow).
/// din_lab.scoring mirrors these integer operations exactly.
library BlockFlowScoring {
    uint256 internal constant ONE = 1e18;
    uint256 internal constant HALF = 5e17;

    error ScoreOutOfRange(uint256 row, uint256 column, uint256 score);
    error RaggedMatrix(uint256 row, uint256 length, uint256 expected);

    /// @dev A sorted copy (insertion sort: committees are small).
    function _sorted(uint256[] memory values) private pure returns (uint256[] memory v) {
        uint256 n = values.length;
        v = new uint256[](n);
        for (uint256 i = 0; i < n; ++i) {
            uint256 x = values[i];
            uint256 j = i;
            while (j > 0 && v[j - 1] > x) {
                v[j] = v[j - 1];
                --j;
            }
            v[j] = x;
        }
    }

    function lowerMedian(uint256[] memory values) internal pure returns (uint256) {
        return _sorted(values)[(values.length - 1) / 2];
    }

    function agreement(uint256 score, uint256 median) internal pure returns (uint256) {
        uint256 d = score > median ? score - median : median - score;
        if (d >= HALF) return 0;
        return ((HALF - d) * ONE) / (HALF + d);
    }

    /// @notice model scores (per column) and evaluator scores (per row) of `matrix`.
    function reduce(uint256[][] memory matrix)
        internal
        pure
        returns (uint256[] memory model, uint256[] memory evaluator)
    {
        uint256 rows = matrix.length;
        uint256 cols = rows == 0 ? 0 : matrix[0].length;
        for (uint256 i = 0; i < rows; ++i) {
            if (matrix[i].length != cols) revert RaggedMatrix(i, matrix[i].length, cols);
            for (uint256 j = 0; j < cols; ++j) {
                if (matrix[i][j] > ONE) revert ScoreOutOfRange(i, j, matrix[i][j]);
            }
        }
        model = new uint256[](cols);
        uint256[] memory column = new uint256[](rows);
        for (uint256 j = 0; j < cols; ++j) {
            for (uint256 i = 0; i < rows; ++i) column[i] = matrix[i][j];
            model[j] = lowerMedian(column);
        }
        evaluator = new uint256[](rows);
        for (uint256 i = 0; i < rows; ++i) {
            uint256 worst = ONE;
            for (uint256 j = 0; j < cols; ++j) {
                uint256 a = agreement(matrix[i][j], model[j]);
                if (a < worst) worst = a;
            }
            evaluator[i] = worst;
        }
    }

    /// @notice DIN's reduction for a committee's reports: with an odd number of rows it is `reduce`
    /// exactly; with an even number the model score is the mean of the two middle values and an
    /// evaluator's agreement is measured to the nearer of them, so half of the rows can neither set a
    /// score alone nor make the other half look like outliers.
    function reduceStrict(uint256[][] memory matrix)
        internal
        pure
        returns (uint256[] memory model, uint256[] memory evaluator)
    {
        uint256 rows = matrix.length;
        if (rows % 2 == 1) return reduce(matrix);
        uint256 cols = rows == 0 ? 0 : matrix[0].length;
        for (uint256 i = 0; i < rows; ++i) {
            if (matrix[i].length != cols) revert RaggedMatrix(i, matrix[i].length, cols);
        }
        model = new uint256[](cols);
        uint256[] memory lower = new uint256[](cols);
        uint256[] memory upper = new uint256[](cols);
        uint256[] memory column = new uint256[](rows);
        for (uint256 j = 0; j < cols; ++j) {
            for (uint256 i = 0; i < rows; ++i) {
                if (matrix[i][j] > ONE) revert ScoreOutOfRange(i, j, matrix[i][j]);
                column[i] = matrix[i][j];
            }
            (lower[j], upper[j]) = middles(column);
            model[j] = (lower[j] + upper[j]) / 2;
        }
        evaluator = new uint256[](rows);
        for (uint256 i = 0; i < rows; ++i) {
            uint256 worst = ONE;
            for (uint256 j = 0; j < cols; ++j) {
                uint256 a = agreement(matrix[i][j], lower[j]);
                uint256 b = agreement(matrix[i][j], upper[j]);
                if (b > a) a = b;
                if (a < worst) worst = a;
            }
            evaluator[i] = worst;
        }
    }

    /// @notice The two middle values of an even-length list (sorted positions n/2 - 1 and n/2).
    function middles(uint256[] memory values) internal pure returns (uint256 lo, uint256 hi) {
        uint256[] memory v = _sorted(values);
        return (v[values.length / 2 - 1], v[values.length / 2]);
    }

    function _max(uint256[] memory xs) private pure returns (uint256 m) {
        for (uint256 i = 0; i < xs.length; ++i) if (xs[i] > m) m = xs[i];
    }

    /// @notice BlockFlow's overall score for a square matrix; zero where a maximum is zero.
    function overall(uint256[] memory model, uint256[] memory evaluator)
        internal
        pure
        returns (uint256[] memory out)
    {
        uint256 maxModel = _max(model);
        uint256 maxEval = _max(evaluator);
        out = new uint256[](model.length);
        for (uint256 j = 0; j < model.length; ++j) {
            uint256 a = maxModel == 0 ? 0 : (model[j] * ONE) / maxModel;
            uint256 b = maxEval == 0 ? 0 : (evaluator[j] * ONE) / maxEval;
            out[j] = a < b ? a : b;
        }
    }
}

/// @notice Stateless on-chain reference of the reduction, so anyone (and our conformance
/// tests) can run exactly the contract's arithmetic with an eth_call.
contract BlockFlowReference {
    function scores(uint256[][] calldata matrix)
        external
        pure
        returns (uint256[] memory model, uint256[] memory evaluator, uint256[] memory overallScores)
    {
        (model, evaluator) = BlockFlowScoring.reduce(matrix);
        if (matrix.length == model.length) {
            overallScores = BlockFlowScoring.overall(model, evaluator);
        }
    }
}
